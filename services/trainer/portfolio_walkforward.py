"""Walk-forward of portfolio policies on real data (the report's figures), and the two real `--data DIR`s.

    python -m services.trainer.portfolio_walkforward freqtrade SRC OUT_DIR   # the six 5-minute */BTC pairs
    python -m services.trainer.portfolio_walkforward ticks SRC OUT_DIR   # Binance spot + USD-M BTC/USDT
    python -m services.trainer.portfolio_walkforward run DIR --folds 3 --timesteps 30000 --seeds 0 1 2

`run` trains one PPO policy per fold and seed on an expanding window: fold k's policy is trained on
the bars before its validation block, validated on that block and tested on the next block,
which no policy of that fold has seen; the test blocks tile the last `--test` share of the bars.
It prints one JSON object: per seed the chained out-of-sample metrics (each fold's policy trades
its own block) beside every baseline over the same bars, after the same costs and funding.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from services.trainer.data import bars_from_trades, load_bars
from services.trainer.market_dir import load_market_dir, load_market_funding
from services.trainer.portfolio_eval import baseline_report, policy_weights, portfolio_metrics, simulate_weights
from services.trainer.portfolio_training import portfolio_config_from, portfolio_data, train_portfolio
from services.trainer.synth import write_csv
from services.trainer.training import load_config
from shared.rl.bars import Bars
from shared.rl.portfolio import load_portfolio_policy


def _common(bars: list[Bars]) -> list[Bars]:
    """Every market cut to the bar times all of them have (a missing bar drops that time everywhere)."""
    common = bars[0].ts
    for b in bars[1:]:
        common = np.intersect1d(common, b.ts)
    out = []
    for b in bars:
        idx = np.searchsorted(b.ts, common)
        out.append(Bars(common, b.open[idx], b.high[idx], b.low[idx], b.close[idx], b.volume[idx]))
    return out


def freqtrade_dir(out: Path, source: Path, rows: int | None = None) -> list[str]:
    """`binance__<BASE>-BTC.csv` per freqtrade `<BASE>_BTC-5m.feather`, on the common 5-minute bars."""
    files = sorted(source.glob("*_BTC-5m.feather"))
    bars = _common([load_bars(f) for f in files])
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for f, b in zip(files, bars, strict=True):
        name = f"binance__{f.name.split('_')[0]}-BTC.csv"
        write_csv(b if rows is None else b.slice(0, rows), str(out / name))
        names.append(name)
    return names


def ticks_dir(out: Path, source: Path, bar_seconds: float = 0.5) -> list[str]:
    """Binance spot and USD-M BTC/USDT trades -> bars of `bar_seconds`, on the seconds both recorded."""
    frame = pd.read_json(source, lines=True, dtype=False)
    trades = frame[frame["type"] == "trade"]
    per = {ex: trades[trades["exchange"] == ex] for ex in ("binance", "binance_futures")}
    lo = max(int(t["ts"].min()) for t in per.values())
    hi = min(int(t["ts"].max()) for t in per.values())
    bars = []
    for t in per.values():
        t = t[(t["ts"] >= lo) & (t["ts"] <= hi)]
        bars.append(
            bars_from_trades(
                t["ts"].to_numpy(np.int64),
                t["price"].to_numpy(np.float64),
                t["amount"].to_numpy(np.float64),
                (t["side"] == "buy").to_numpy(),
                bar_seconds,
            )
        )
    out.mkdir(parents=True, exist_ok=True)
    names = ["binance__BTC-USDT.csv", "binance_futures__BTC-USDT.csv"]
    for name, b in zip(names, _common(bars), strict=True):  # epoch milliseconds: sub-second bars
        table = {"date": b.ts // 1_000_000, "open": b.open, "high": b.high, "low": b.low, "close": b.close}
        pd.DataFrame({**table, "volume": b.volume}).to_csv(out / name, index=False)
    return names


def walk_forward(
    data_dir: Path,
    out_root: Path,
    folds: int,
    timesteps: int,
    seeds: list[int],
    test_share: float,
    validation_share: float,
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train and test one policy per fold and seed; chained out-of-sample metrics per seed, baselines once."""
    markets, bars = load_market_dir(data_dir)
    n = len(bars[0])
    base = load_config("ppo", None, overrides)
    pcfg = portfolio_config_from(base, "ppo")
    funding, sources = load_market_funding(data_dir, markets, bars, pcfg.funding_rate_8h)
    full = portfolio_data(bars, markets, base, "ppo", funding)
    first = int(n * (1 - test_share))
    edges = np.linspace(first, n - 1, folds + 1).astype(int)
    val = int(n * validation_share)
    result: dict[str, Any] = {
        "data": str(data_dir),
        "markets": [f"{ex}:{sym}" for ex, sym in markets],
        "bars": n,
        "bar_seconds": full.bar_seconds,
        "funding": sources,
        "folds": [[int(a), int(b)] for a, b in itertools.pairwise(edges)],
        "timesteps_per_fold": timesteps,
        "overrides": list(overrides),
        "seeds": {},
    }
    result["baselines"] = baseline_report(full, int(edges[0]), int(edges[-1]), pcfg)
    for seed in seeds:
        weights, fold_reports = [], []
        for k, (start, stop) in enumerate(itertools.pairwise(edges)):
            end = int(stop) + 1  # bars [0, end): the fold's test block is [start, stop)
            train_frac = (int(start) - val) / end
            config = load_config(
                "ppo", None, (*overrides, f"split.train={train_frac!r}", f"split.validation={val / end!r}")
            )
            sliced = [b.slice(0, end) for b in bars]
            fund = {m: f[:end] for m, f in funding.items()}
            out = out_root / f"s{seed}-f{k}"
            trained = train_portfolio(
                sliced, markets, "ppo", out, timesteps, seed, 0.0, config, str(data_dir), funding=fund
            )
            test = trained.metrics["test"]
            policy = load_portfolio_policy(out, None)
            weights.append(policy_weights(policy, full, int(start), int(stop), pcfg))
            fold_reports.append(
                {
                    "fold": k,
                    "bars": [int(start), int(stop)],
                    "train_s": trained.metrics["train_s"],
                    "test_from_bar": int(np.searchsorted(full.ts, test["from_ts"])),
                    "total_return": test["total_return"],
                    "sharpe": test["sharpe"],
                    "buy_and_hold": test["baselines"]["buy_and_hold"]["total_return"],
                    "validation_sharpe": trained.metrics["validation"]["sharpe"],
                }
            )
            print(json.dumps({"seed": seed, **fold_reports[-1]}), file=sys.stderr, flush=True)
        w = np.concatenate(weights)
        chained = portfolio_metrics(*simulate_weights(full, w, int(edges[0]), pcfg))
        result["seeds"][str(seed)] = {"chained": chained, "folds": fold_reports}
    keys = ("total_return", "sharpe", "max_drawdown", "turnover", "trades", "fees")
    result["median_over_seeds"] = {
        k: float(np.median([s["chained"][k] for s in result["seeds"].values()])) for k in keys
    }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.trainer.portfolio_walkforward")
    sub = parser.add_subparsers(dest="cmd", required=True)
    freqtrade = sub.add_parser("freqtrade")
    freqtrade.add_argument("source", type=Path, help="the folder of freqtrade <BASE>_BTC-5m.feather files")
    freqtrade.add_argument("out", type=Path)
    ticks = sub.add_parser("ticks")
    ticks.add_argument("source", type=Path, help="normalized JSON lines with binance and binance_futures trades")
    ticks.add_argument("out", type=Path)
    ticks.add_argument("--bar-seconds", type=float, default=0.5)
    run = sub.add_parser("run")
    run.add_argument("data", type=Path)
    run.add_argument("--out", type=Path, default=Path("/tmp/portfolio-wf"))
    run.add_argument("--folds", type=int, default=3)
    run.add_argument("--timesteps", type=int, default=30_000)
    run.add_argument("--seeds", type=int, nargs="+", default=[0])
    run.add_argument("--test", type=float, default=0.45, help="share of the bars tested (tiled by the folds)")
    run.add_argument("--validation", type=float, default=0.1, help="share of the bars validated before each fold")
    run.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value")
    args = parser.parse_args(argv)
    if args.cmd == "freqtrade":
        print("\n".join(freqtrade_dir(args.out, args.source)))
    elif args.cmd == "ticks":
        print("\n".join(ticks_dir(args.out, args.source, args.bar_seconds)))
    else:
        report = walk_forward(
            args.data,
            args.out,
            args.folds,
            args.timesteps,
            args.seeds,
            args.test,
            args.validation,
            tuple(args.overrides),
        )
        print(json.dumps(report, default=float))


if __name__ == "__main__":
    main()
