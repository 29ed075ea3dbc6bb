"""Execution guards and order plans on a hand-made profitable triangle."""

from __future__ import annotations

import pytest

from services.executor.arbitrage.books import Book
from services.executor.arbitrage.guards import HOUR_NS, ExecutionGuards, leg_orders, unwind_orders
from services.executor.arbitrage.markets import Market
from services.executor.arbitrage.scan import Opportunity, scan
from shared.sections.arbitrage import ArbitrageSettings

FEE = 0.001
MARKETS = [
    Market("BTC/USDT", "BTC", "USDT", FEE, step=0.0001),
    Market("ETH/BTC", "ETH", "BTC", FEE, step=0.001),
    Market("ETH/USDT", "ETH", "USDT", FEE, step=0.001),
]
# USDT -> BTC at 100, BTC -> ETH at 0.05, ETH -> USDT at 5.5: 10% gross
BOOKS = {
    "BTC/USDT": Book(((99.0, 5.0),), ((100.0, 5.0),)),
    "ETH/BTC": Book(((0.049, 50.0),), ((0.05, 10.0),)),
    "ETH/USDT": Book(((5.5, 100.0),), ((5.6, 100.0),)),
}


def opportunity() -> Opportunity:
    [found] = scan(MARKETS, BOOKS, max_len=3, start_assets=["USDT"])
    assert found.assets == ("USDT", "BTC", "ETH", "USDT")
    return found


def test_fires_on_fresh_books_and_a_wide_edge() -> None:
    guards = ExecutionGuards(ArbitrageSettings(book_max_age_ms=100))
    now = 10**12
    assert guards.refusal(opportunity(), [now - 50_000_000] * 3, now) is None


def test_stale_leg_book_is_refused() -> None:
    guards = ExecutionGuards(ArbitrageSettings(book_max_age_ms=100))
    now = 10**12
    assert guards.refusal(opportunity(), [now, now - 150_000_000, now], now) == "stale_book"


def test_edge_must_cover_the_slippage_buffer() -> None:
    found = opportunity()
    # the per-leg slippage at which three legs eat exactly the net edge
    per_leg = 1 - (1 / (1 + found.net_return)) ** (1 / 3)
    below = ArbitrageSettings(slippage_bps=per_leg * 10_000 * 0.99)
    above = ArbitrageSettings(slippage_bps=per_leg * 10_000 * 1.01)
    assert ExecutionGuards(below).refusal(found, [0, 0, 0], 0) is None
    assert ExecutionGuards(above).refusal(found, [0, 0, 0], 0) == "edge_below_slippage"


def test_hourly_cap_and_cooldown() -> None:
    guards = ExecutionGuards(ArbitrageSettings(max_executions_per_hour=2, cooldown_s=30))
    found = opportunity()
    t0 = 10**12
    guards.started(t0)
    guards.started(t0 + 1)
    assert guards.refusal(found, [t0 + 2] * 3, t0 + 2) == "hourly_cap"
    later = t0 + HOUR_NS
    assert guards.refusal(found, [later] * 3, later) is None  # the first one has left the window
    guards.failed(later)
    assert guards.refusal(found, [later + 10**9] * 3, later + 10**9) == "cooldown"
    after = later + 31 * 10**9
    assert guards.refusal(found, [after] * 3, after) is None


def test_leg_orders_follow_the_plan_within_the_cap_and_slippage() -> None:
    found = opportunity()
    markets = {m.symbol: m for m in MARKETS}
    orders = leg_orders(found, markets, ArbitrageSettings(slippage_bps=10))
    assert [(o.symbol, o.side) for o in orders] == [("BTC/USDT", "buy"), ("ETH/BTC", "buy"), ("ETH/USDT", "sell")]
    assert [o.amount for o in orders] == pytest.approx([f.amount for f in found.sized.fills])
    assert orders[0].limit_price == pytest.approx(100.0 * 1.001)
    assert orders[2].limit_price == pytest.approx(5.5 * 0.999)
    capped = leg_orders(found, markets, ArbitrageSettings(max_start_amount={"USDT": 10.0}))
    scale = 10.0 / found.max_start_amount
    for order, fill in zip(capped, found.sized.fills, strict=True):
        step = markets[order.symbol].step
        assert fill.amount * scale - step <= order.amount <= fill.amount * scale
        assert order.amount / step == pytest.approx(round(order.amount / step))
    assert capped[0].amount * 100.0 <= 10.0


def test_unwind_goes_back_to_the_start_asset() -> None:
    # stuck with BTC after the middle leg failed: sell it straight back on BTC/USDT
    [order] = unwind_orders("BTC", 0.49975, "USDT", MARKETS, BOOKS)
    assert (order.symbol, order.side, order.order_type) == ("BTC/USDT", "sell", "market")
    assert order.amount == pytest.approx(0.4997)  # rounded down to the 0.0001 step
    # holding USDT already: nothing to do
    assert unwind_orders("USDT", 5.0, "USDT", MARKETS, BOOKS) == []


def test_unwind_through_an_intermediate_asset() -> None:
    markets = MARKETS[:2]  # no ETH/USDT: ETH goes back through BTC
    orders = unwind_orders("ETH", 10.0, "USDT", markets, BOOKS)
    assert [(o.symbol, o.side) for o in orders] == [("ETH/BTC", "sell"), ("BTC/USDT", "sell")]
    assert orders[1].amount == pytest.approx(10.0 * 0.049 * (1 - FEE), abs=0.0001)
