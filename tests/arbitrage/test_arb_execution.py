"""The cycle strategy executing on the paper exchange: profit, unwind after a failed leg, guards."""

from __future__ import annotations

import math

import pytest

from shared.sections.arbitrage import ArbitrageSettings

from .paper_harness import MS, Harness

FEE = 0.001
# USDT -> BTC at the 60,010 ask, BTC -> ETH at the 0.05001 ask, ETH -> USDT at the 3,030 bid
BTC_USDT = ([(60_000.0, 2.0)], [(60_010.0, 2.0)])
ETH_BTC = ([(0.04999, 40.0)], [(0.05001, 40.0)])
ETH_USDT = ([(3_030.0, 40.0)], [(3_031.0, 40.0)])
NET = 3_030.0 / 60_010.0 / 0.05001 * (1 - FEE) ** 3 - 1  # ≈ +0.66% after three taker fees


def after_fee(amount: float) -> float:
    """What a fill of ``amount`` delivers: the venue books the fee rounded to 8 decimals."""
    return amount - round(amount * FEE, 8)


def settings(**kw: object) -> ArbitrageSettings:
    base: dict[str, object] = {
        "max_len": 3,
        "start_assets": ["USDT"],
        "max_start_amount": {"USDT": 1_000.0},
        "book_max_age_ms": 500.0,
        "cooldown_s": 30.0,
        "record_interval_s": 0.0,
    }
    return ArbitrageSettings(**(base | kw))  # type: ignore[arg-type]


def load(h: Harness) -> list:  # type: ignore[type-arg]
    """Feed the three books; the last one completes the triangle and fires."""
    h.book("BTC/USDT", *BTC_USDT)
    h.book("ETH/BTC", *ETH_BTC)
    return h.book("ETH/USDT", *ETH_USDT)


def test_profitable_cycle_executes_sequentially_and_the_ledger_shows_the_profit() -> None:
    h = Harness(settings(), {"USDT": 5_000.0})
    first = load(h)
    assert [(i.symbol, i.side, i.order_type) for i in first] == [("BTC/USDT", "buy", "ioc")]
    h.run(50)
    assert [(i.symbol, i.side) for i in h.sent] == [("BTC/USDT", "buy"), ("ETH/BTC", "buy"), ("ETH/USDT", "sell")]
    # each next leg is sized from what the previous one actually delivered (fee in the received asset)
    btc_got = after_fee(h.sent[0].amount)
    assert h.sent[1].amount == pytest.approx(math.floor(btc_got / (0.05001 * 1.0005) * 1e8) / 1e8, abs=1e-9)
    assert h.sent[2].amount == pytest.approx(math.floor(after_fee(h.sent[1].amount) * 1e8) / 1e8, abs=1e-9)
    ops, [ex] = h.strategy.drain()
    assert ex.status == "completed" and ex.mode == "sequential"
    assert ops[0].decision == "fired" and ops[0].net_return == pytest.approx(NET, rel=1e-9)
    usdt = h.ledger("USDT") - 5_000.0
    # independently: what the three legs' amounts earn at the book prices after fees
    spent = h.sent[0].amount * 60_010.0
    back = after_fee(h.sent[2].amount * 3_030.0)
    assert usdt == pytest.approx(back - spent, abs=1e-6)
    assert usdt > 0.006 * 1_000 * 0.9  # most of the ≈0.66% edge on the 1,000 USDT cap survives
    assert ex.realized_profit == pytest.approx(ex.expected_profit, rel=0.05)
    assert ex.start_amount <= 1_000.0


def test_with_inventory_in_every_asset_all_legs_fire_at_once() -> None:
    h = Harness(settings(), {"USDT": 5_000.0, "BTC": 1.0, "ETH": 10.0})
    first = load(h)
    assert sorted(i.symbol for i in first) == ["BTC/USDT", "ETH/BTC", "ETH/USDT"]
    h.run(50)
    _, [ex] = h.strategy.drain()
    assert ex.status == "completed" and ex.mode == "all_at_once"
    assert h.ledger("USDT") - 5_000.0 == pytest.approx(ex.realized_profit - _marked_rest(h, ex.residuals), abs=1e-6)
    assert ex.realized_profit > 0


def _marked_rest(h: Harness, residuals: dict[str, float]) -> float:
    return sum(x * (h.strategy.value(a, "USDT") or 0.0) for a, x in residuals.items())


def test_failing_middle_leg_unwinds_to_the_start_asset_and_the_ledger_shows_the_loss() -> None:
    h = Harness(settings(book_max_age_ms=60_000.0), {"USDT": 5_000.0})
    load(h)
    # the ETH/BTC ask runs away before the middle leg reaches the venue
    h.venue_book("ETH/BTC", [(0.0500, 40.0)], [(0.0510, 40.0)])
    h.run(50)
    assert [(i.symbol, i.side, i.order_type) for i in h.sent] == [
        ("BTC/USDT", "buy", "ioc"),
        ("ETH/BTC", "buy", "ioc"),
        ("BTC/USDT", "sell", "market"),
    ]
    _, [ex] = h.strategy.drain()
    assert ex.status == "unwound" and "ETH/BTC cancelled" in ex.failure
    btc_bought = h.sent[0].amount
    btc_sold = h.sent[2].amount
    assert btc_sold == pytest.approx(after_fee(btc_bought), abs=1e-8)  # everything the first leg delivered
    loss = after_fee(btc_sold * 60_000.0) - btc_bought * 60_010.0
    assert h.ledger("USDT") - 5_000.0 == pytest.approx(loss, abs=1e-6)
    assert loss < 0 and ex.realized_profit == pytest.approx(loss, abs=1e-6)
    assert h.ledger("BTC") == pytest.approx(0.0, abs=1e-8)  # nothing left unhedged
    assert h.ledger("ETH") == 0.0
    # a failure starts the cool-down: the same opportunity is refused until it ends
    assert h.book("ETH/BTC", [(0.0500, 40.0)], [(0.0510, 40.0)]) == []  # the strategy sees it move...
    assert h.book("ETH/BTC", *ETH_BTC) == []  # ...and come back inside the cool-down
    ops, _ = h.strategy.drain()
    assert ops[-1].decision == "cooldown"
    h.now += 31_000 * MS
    h.book("ETH/BTC", [(0.0500, 40.0)], [(0.0510, 40.0)])
    assert h.book("ETH/BTC", *ETH_BTC) != []


def test_stale_leg_books_are_not_traded() -> None:
    h = Harness(settings(book_max_age_ms=100.0), {"USDT": 5_000.0})
    h.book("BTC/USDT", *BTC_USDT)
    h.now += 200 * MS  # BTC/USDT is now 200 ms old
    h.book("ETH/BTC", *ETH_BTC)
    assert h.book("ETH/USDT", *ETH_USDT) == []
    assert h.sent == []
    ops, executions = h.strategy.drain()
    assert [o.decision for o in ops] == ["stale_book"] and executions == []


def test_hourly_cap_and_one_execution_at_a_time() -> None:
    h = Harness(settings(max_executions_per_hour=2), {"USDT": 5_000.0})
    load(h)
    assert h.book("ETH/USDT", [(3_030.5, 40.0)], [(3_031.0, 40.0)]) == []  # the first execution is still running
    h.run(50)
    assert h.book("ETH/USDT", [(3_031.0, 40.0)], [(3_032.0, 40.0)]) != []  # done: the second one fires
    h.run(50)
    assert h.book("ETH/USDT", [(3_031.5, 40.0)], [(3_032.0, 40.0)]) == []  # the hour's two are used
    ops, executions = h.strategy.drain()
    assert [o.decision for o in ops] == ["fired", "busy", "fired", "hourly_cap"]
    assert [e.status for e in executions] == ["completed", "completed"]
    h.now += 3_600 * 10**9
    for symbol, (bids, asks) in (("BTC/USDT", BTC_USDT), ("ETH/BTC", ETH_BTC)):
        h.book(symbol, bids, asks)
    assert h.book("ETH/USDT", [(3_030.0, 40.0)], [(3_032.0, 40.0)]) != []  # an hour later it may fire again


def test_per_cycle_cap_limits_the_start_amount() -> None:
    h = Harness(settings(max_start_amount={"USDT": 100.0}), {"USDT": 5_000.0})
    [first] = load(h)
    assert 99.0 < first.amount * 60_010.0 <= 100.0 + 1e-9  # the cap, at the planned price
