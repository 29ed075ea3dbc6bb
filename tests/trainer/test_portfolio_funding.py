"""Recorded funding for `--data DIR`: `<exchange>__<BASE>-<QUOTE>.funding.csv`, aligned without look-ahead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from services.trainer.cli import backtest
from services.trainer.data import DataError
from services.trainer.market_dir import funding_per_bar, load_market_dir, load_market_funding
from services.trainer.synth import lead_lag, write_market_dir
from shared.rl.bars import NS_PER_S
from shared.rl.portfolio import SECONDS_PER_8H

MARKETS = [("binance", "BTC/USDT"), ("binance_futures", "BTC/USDT")]


def test_a_rate_applies_from_its_timestamp_on() -> None:
    bar_ts = np.arange(10, dtype=np.int64) * 60 * NS_PER_S  # 1-minute bars, open times
    rate_ts = np.array([3 * 60 * NS_PER_S, 7 * 60 * NS_PER_S + 1], dtype=np.int64)
    per_bar = funding_per_bar(bar_ts, 60.0, rate_ts, np.array([0.001, -0.002]), 0.0001) * SECONDS_PER_8H / 60.0
    # bar t is held from its close (open + 60 s): bars 0-1 before the first rate pay the constant,
    # bar 2 (held from 3 min, the first rate's stamp) pays it, and the second rate, stamped 1 ns
    # after bar 6's close, reaches bar 7 first
    np.testing.assert_allclose(per_bar, [1e-4, 1e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, -2e-3, -2e-3, -2e-3])


def test_market_dir_reads_recorded_funding_and_says_so(tmp_path: Path) -> None:
    synth = lead_lag(400, 0, markets=MARKETS)
    write_market_dir(synth, str(tmp_path))
    start = synth.bars[0].ts[0] // NS_PER_S
    stamps = [start + 100 * 60, start + 100 * 60 + 8 * 3600]
    rows = "\n".join(f"{s},{r}" for s, r in zip(stamps, (0.003, 0.0), strict=True))
    (tmp_path / "binance_futures__BTC-USDT.funding.csv").write_text(f"date,rate\n{rows}\n")
    markets, bars = load_market_dir(tmp_path)  # the funding file is not a market
    assert markets == MARKETS
    funding, sources = load_market_funding(tmp_path, markets, bars, 0.0001)
    assert list(funding) == [("binance_futures", "BTC/USDT")]
    per_bar = funding[("binance_futures", "BTC/USDT")]
    assert per_bar[98] == pytest.approx(0.0001 / 480) and per_bar[99] == pytest.approx(0.003 / 480)
    assert (
        "recorded binance_futures__BTC-USDT.funding.csv: 2 rates; 99 bars before" in sources["binance_futures:BTC/USDT"]
    )

    root = {"TRADEWIND_TRAINER__POLICY_DIR": str(tmp_path)}
    args = ["--data", str(tmp_path), "--policy", "baseline:buy_and_hold", "--json"]
    recorded = CliRunner().invoke(backtest, args, env=root)
    assert recorded.exit_code == 0, recorded.output
    report = json.loads(recorded.stdout.strip().splitlines()[-1])
    assert report["funding"]["binance_futures:BTC/USDT"].startswith("recorded")
    (tmp_path / "binance_futures__BTC-USDT.funding.csv").unlink()
    constant = json.loads(CliRunner().invoke(backtest, args, env=root).stdout.strip().splitlines()[-1])
    assert constant["funding"]["binance_futures:BTC/USDT"].startswith("constant 0.0001 per 8h")
    assert constant["total_return"] > report["total_return"]  # the long perp paid 30x the constant for a while

    (tmp_path / "binance__BTC-USDT.funding.csv").write_text("date,rate\n0,0.001\n")
    with pytest.raises(DataError, match="not a perpetual"):
        load_market_funding(tmp_path, markets, bars, 0.0001)
    (tmp_path / "binance__BTC-USDT.funding.csv").unlink()
    (tmp_path / "binance_futures__BTC-USDT.funding.csv").write_text("date,rate\n0,abc\n")
    with pytest.raises(DataError, match="funding rate per 8 h"):
        load_market_funding(tmp_path, markets, bars, 0.0001)


def test_freqtrade_funding_feather_is_read(tmp_path: Path) -> None:
    source = (
        Path(__file__).parents[2] / ".." / "shared/data/candles/futures_2021-11/XRP_USDT_USDT-8h-funding_rate.feather"
    )
    if not source.exists():
        pytest.skip("the shared capture set is not beside the repository")
    from services.trainer.market_dir import read_funding_file

    ts, rate = read_funding_file(_copy(source, tmp_path / "binance_futures__XRP-USDT.funding.feather"))
    assert len(ts) == 91 and np.all(np.diff(ts) > 0) and rate[0] == pytest.approx(0.0001)


def _copy(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes())
    return target


def test_real_spot_and_perp_ticks_make_an_aligned_market_dir(tmp_path: Path) -> None:
    """The report's Binance spot + USD-M BTC/USDT capture (tests/data/risk) -> 0.5 s bars -> a baseline backtest."""
    from services.trainer.portfolio_eval import evaluate
    from services.trainer.portfolio_walkforward import ticks_dir
    from shared.rl.portfolio import PortfolioConfig, build_portfolio_data

    ticks_dir(tmp_path, Path(__file__).parents[1] / "data" / "risk" / "binance_btcusdt_20240808-09.jsonl.gz")
    markets, bars = load_market_dir(tmp_path)
    assert markets == MARKETS and len(bars[0]) == 686 and bars[0].bar_seconds == 0.5
    assert 61_000 < bars[0].close[-1] < 62_500 and 61_000 < bars[1].close[-1] < 62_500
    funding, sources = load_market_funding(tmp_path, markets, bars, 0.0001)
    assert not funding and sources["binance_futures:BTC/USDT"].startswith("constant")
    data = build_portfolio_data(bars, markets, time_features="none", funding=funding)
    assert any(name.startswith("basis:binance:BTC/USDT-binance_futures") for name in data.names)
    report = evaluate("baseline:flat", data, 400, 685, PortfolioConfig())
    assert report["total_return"] == 0.0 and set(report["baselines"]) >= {"buy_and_hold", "best_single_market"}
