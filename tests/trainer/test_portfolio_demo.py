"""The `make portfolio-demo` data: the replay sample's two Binance captures as one `--data DIR`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.trainer.market_dir import load_market_dir
from services.trainer.portfolio_demo import sample_dir


def test_the_sample_gives_aligned_spot_and_usdm_bars_enough_for_a_split(tmp_path: Path) -> None:
    names = sample_dir(tmp_path, bar_seconds=0.05)
    assert names == ["binance__BTC-USDT.csv", "binance_futures__BTC-USDT.csv"]
    markets, bars = load_market_dir(tmp_path)
    assert markets == [("binance", "BTC/USDT"), ("binance_futures", "BTC/USDT")]
    assert np.array_equal(bars[0].ts, bars[1].ts)
    assert len(bars[0]) >= 500  # the trainer's 60/20/20 split needs >= 300 train bars, 50 each held out
    assert np.all(np.diff(bars[0].ts) == 50_000_000)  # 50 ms apart, no gap: ~30 s both captures cover
    assert all(np.all(b.close > 50_000) for b in bars)  # BTC/USDT on 2024-08-08
