"""The engine's one-pass move of both sides of a market gives what two one-side moves give, bit for bit."""

from __future__ import annotations

import random

import numpy as np

from services.executor.arbitrage.cycles import enumerate_cycles
from services.executor.arbitrage.engine import SMALL_EDGE, CycleEngine
from services.executor.arbitrage.markets import Market

from .snapshots import binance_tops


def test_both_sides_at_once_equals_one_side_at_a_time(binance_markets: list[Market]) -> None:
    tops = binance_tops(binance_markets, seed=5, noise=0.001)
    cycles = enumerate_cycles(binance_markets, 4, ["USDT", "BTC", "ETH"])
    together, apart = CycleEngine(cycles), CycleEngine(cycles)
    for engine in (together, apart):
        for m, market in enumerate(binance_markets):
            engine.load(m, *tops.get(market.symbol, (0.0, 0.0)))
        engine.resync()
    sizes = [len(cycles.by_edge[2 * m]) + len(cycles.by_edge[2 * m + 1]) for m in range(len(binance_markets))]
    in_cycles = [m for m, n in enumerate(sizes) if n]
    assert min(sizes[m] for m in in_cycles) < SMALL_EDGE < max(sizes)  # both the loop and the numpy pass run
    rng = random.Random(9)
    for step in range(4000):
        m = rng.choice(in_cycles)
        mid = (together.bid[m] or together.ask[m] or 1.0) * (1 + rng.gauss(0, 0.003))
        bid, ask = mid * 0.9997, mid * 1.0003
        roll = rng.random()
        if roll < 0.03:
            bid = 0.0
        elif roll < 0.06:
            ask = 0.0
        elif roll < 0.1:
            bid = together.bid[m]
        both = together.update(m, bid, ask)
        one_by_one = apart.update(m, bid, apart.ask[m]) + apart.update(m, bid, ask)
        assert both == one_by_one, step
        assert together.confirm(both) == apart.confirm(one_by_one)
    assert np.array_equal(together._sums, apart._sums)
