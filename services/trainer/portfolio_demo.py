"""The `make run` portfolio demo's data: the shipped replay sample's two Binance captures as a `--data DIR`.

    python -m services.trainer.portfolio_demo OUT_DIR [--bar-seconds 0.05]

writes `binance__BTC-USDT.csv` and `binance_futures__BTC-USDT.csv`: bars of `--bar-seconds` built
from the `btcusdt@trade` frames of `services/ingest/sample` (Binance spot, 120 s; USD-M, 30 s),
timed by the capture's local receive time (the clock the executor builds bars on in replay), on
the seconds both recorded. That is ~30 s of market: a policy trained on it (`make portfolio-demo`)
is a plumbing demonstration, promoted by hand, not a policy with an edge.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd

from services.trainer.data import bars_from_trades
from services.trainer.portfolio_walkforward import _common

SAMPLE = Path(__file__).resolve().parents[1] / "ingest" / "sample"
CAPTURES = {  # file name in the --data DIR -> the capture it is built from
    "binance__BTC-USDT.csv": SAMPLE / "binance" / "hftbacktest" / "spot_btcusdt_20240808.gz",
    "binance_futures__BTC-USDT.csv": SAMPLE / "binance_futures" / "hftbacktest" / "usdm_btcusdt_20240808.gz",
}


def capture_trades(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(receive ns, price, amount, taker bought) of every `@trade` frame of an hftbacktest capture."""
    ts, price, amount, buy = [], [], [], []
    with gzip.open(path, "rt") as lines:
        for line in lines:
            recv, _, payload = line.partition(" ")
            if "@trade" not in payload[:64]:
                continue
            data = json.loads(payload)["data"]
            ts.append(int(recv))
            price.append(float(data["p"]))
            amount.append(float(data["q"]))
            buy.append(not data["m"])  # the buyer was the maker: a taker sold
    return np.asarray(ts, np.int64), np.asarray(price), np.asarray(amount), np.asarray(buy, bool)


def sample_dir(out: Path, bar_seconds: float = 0.05) -> list[str]:
    """Write the two markets' bars (epoch-millisecond dates) over the time both captures cover; their names."""
    trades = [capture_trades(path) for path in CAPTURES.values()]
    lo = max(int(t[0][0]) for t in trades)
    hi = min(int(t[0][-1]) for t in trades)
    bars = []
    for ts, price, amount, buy in trades:
        keep = (ts >= lo) & (ts <= hi)
        bars.append(bars_from_trades(ts[keep], price[keep], amount[keep], buy[keep], bar_seconds))
    out.mkdir(parents=True, exist_ok=True)
    for name, b in zip(CAPTURES, _common(bars), strict=True):
        table = {"date": b.ts // 1_000_000, "open": b.open, "high": b.high, "low": b.low, "close": b.close}
        pd.DataFrame({**table, "volume": b.volume}).to_csv(out / name, index=False)
    return list(CAPTURES)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--bar-seconds", type=float, default=0.05)
    args = parser.parse_args(argv)
    for name in sample_dir(args.out, args.bar_seconds):
        print(args.out / name)


if __name__ == "__main__":
    main()
