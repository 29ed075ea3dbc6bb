"""The cycle engine against the brute-force oracle on real market lists and ticker snapshots."""

from __future__ import annotations

import random

import pytest

from services.executor.arbitrage.cycles import SIDE_NAMES, enumerate_cycles
from services.executor.arbitrage.engine import CycleEngine
from services.executor.arbitrage.markets import Market, markets_from_symbols

from .oracle import Key, hub_order, oracle_cycles, oracle_profitable, rotation_free
from .snapshots import POLONIEX_TICKERS, binance_tops, poloniex_tops


def engine_key(engine: CycleEngine, cycle: int) -> Key:
    legs = [(engine.cycles.markets[m].symbol, SIDE_NAMES[s]) for m, s in engine.cycles.legs(cycle)]
    return rotation_free(legs)


def loaded_engine(markets, tops, max_len, starts) -> CycleEngine:
    engine = CycleEngine(enumerate_cycles(markets, max_len, starts))
    for m, market in enumerate(markets):
        engine.load(m, *tops.get(market.symbol, (0.0, 0.0)))
    return engine


def assert_same(engine: CycleEngine, confirmed: list[tuple[int, float, float]], expected: dict) -> None:
    got = {engine_key(engine, c): (gross, net) for c, gross, net in confirmed}
    # a cycle whose product is 1 within rounding may fall either side in two computations
    edge = {k for k, (_, net) in {**expected, **got}.items() if abs(net) < 1e-12}
    assert set(got) - edge == set(expected) - edge
    for key in set(got) & set(expected):
        assert got[key][0] == pytest.approx(expected[key][0], abs=1e-9)
        assert got[key][1] == pytest.approx(expected[key][1], abs=1e-9)


def test_enumeration_is_complete_and_each_cycle_once(binance_markets: list[Market]) -> None:
    starts = ["USDT", "BTC", "ETH", "BNB", "BUSD"]
    cycles = enumerate_cycles(binance_markets, 4, starts)
    expected = oracle_cycles(binance_markets, 4, starts)
    got = {}
    for c in range(len(cycles)):
        legs = [(cycles.markets[m].symbol, SIDE_NAMES[s]) for m, s in cycles.legs(c)]
        got[rotation_free(legs)] = legs
        assets = cycles.assets(c)
        assert assets[0] == assets[-1]
        assert assets[0] == min((a for a in assets if a in starts), key=starts.index)
    assert len(got) == len(cycles), "a cycle was enumerated more than once"
    assert set(got) == set(expected)
    # same rotation: both start at the most preferred start asset of the cycle
    assert all(got[key] == [(m.symbol, side) for m, side in legs] for key, legs in expected.items())
    assert len(expected) > 10_000


@pytest.mark.parametrize("ticker", POLONIEX_TICKERS)
@pytest.mark.parametrize("fee_bps", [0.0, 5.0, 12.5])
@pytest.mark.parametrize("max_len", [3, 4])
def test_poloniex_snapshot_matches_oracle(ticker: str, fee_bps: float, max_len: int) -> None:
    tops = poloniex_tops(ticker)
    markets = markets_from_symbols(sorted(tops), fee_bps / 10_000)
    engine = loaded_engine(markets, tops, max_len, None)
    expected = oracle_profitable(oracle_cycles(markets, max_len, hub_order(markets)), tops)
    assert_same(engine, engine.confirm(engine.resync()), expected)
    if fee_bps == 0.0:
        assert expected, "a fee-free scan of a real snapshot should find crossed cycles"


def test_binance_generated_books_match_oracle(binance_markets: list[Market]) -> None:
    starts = ["USDT", "BTC", "ETH", "BNB"]
    tops = binance_tops(binance_markets, seed=7)
    engine = loaded_engine(binance_markets, tops, 4, starts)
    expected = oracle_profitable(oracle_cycles(binance_markets, 4, starts), tops)
    assert expected
    assert_same(engine, engine.confirm(engine.resync()), expected)


def test_incremental_updates_match_oracle(binance_markets: list[Market]) -> None:
    """Random top-of-book moves (including sides emptying and coming back) applied one by one;
    the cycles the engine reports per update, tracked over time, equal a fresh oracle scan."""
    starts = ["USDT", "BTC", "ETH"]
    tops = binance_tops(binance_markets, seed=11, noise=0.001)
    engine = loaded_engine(binance_markets, tops, 4, starts)
    live = {c for c, _, _ in engine.confirm(engine.resync())}
    index = {m.symbol: i for i, m in enumerate(binance_markets)}
    rng = random.Random(3)
    symbols = sorted(tops)
    oracle = oracle_cycles(binance_markets, 4, starts)
    for step in range(3000):
        symbol = rng.choice(symbols)
        bid, ask = tops[symbol]
        mid = (bid + ask) / 2 * (1 + rng.gauss(0, 0.002))
        roll = rng.random()
        bid, ask = mid * 0.9997, mid * 1.0003
        if roll < 0.03:
            bid = 0.0
        elif roll < 0.06:
            ask = 0.0
        tops[symbol] = (bid, ask)
        m = index[symbol]
        candidates = engine.update(m, bid, ask)
        touched = set(engine.cycles.by_edge[2 * m].tolist()) | set(engine.cycles.by_edge[2 * m + 1].tolist())
        live = (live - touched) | {c for c, _, _ in engine.confirm(candidates)}
        if step % 1000 == 999:
            expected = oracle_profitable(oracle, tops)
            assert_same(engine, [(c, *engine.exact_returns(c)) for c in live], expected)
            assert expected
