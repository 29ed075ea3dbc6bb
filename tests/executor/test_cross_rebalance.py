"""Choosing how to move inventory between venues: the cheapest route that settles in time."""

from __future__ import annotations

import pytest

from services.executor.arbitrage.cross import Top
from services.executor.arbitrage.rebalance import cheapest_route
from shared.sections.executor import TransferRule

FEES = {"a": 0.001, "b": 0.001}
XNO_TOPS = {("a", "XNO/USDT"): Top(0.9999, 1e6, 1.0001, 1e6), ("b", "XNO/USDT"): Top(0.9999, 1e6, 1.0001, 1e6)}


def route(rules: dict[str, TransferRule], tops: dict[tuple[str, str], Top], max_s: float = 60.0):  # type: ignore[no-untyped-def]
    return cheapest_route("USDT", "a", "b", 1_000.0, rules, TransferRule(), tops, FEES, max_s)


def test_a_slow_asset_travels_as_the_fast_coin_at_the_cost_of_both_trades():
    rules = {"USDT": TransferRule(settle_s=300.0, fee=1.0), "XNO": TransferRule(settle_s=1.0, fee=0.0)}
    found = route(rules, XNO_TOPS)
    assert found is not None and (found.coin, found.settle_s) == ("XNO", 1.0)
    coins = 1_000.0 / (1.0001 * 1.001)
    assert found.cost == pytest.approx(1_000.0 - coins * 0.9999 * 0.999)


def test_the_direct_transfer_wins_when_it_is_fast_enough_and_cheaper():
    rules = {"USDT": TransferRule(settle_s=30.0, fee=1.0), "XNO": TransferRule(settle_s=1.0, fee=0.0)}
    found = route(rules, XNO_TOPS)
    assert found is not None and (found.coin, found.cost) == ("USDT", 1.0)


def test_no_route_when_everything_settles_too_slowly_or_no_coin_is_listed_on_both():
    slow = {"USDT": TransferRule(settle_s=300.0, fee=1.0), "XNO": TransferRule(settle_s=120.0, fee=0.0)}
    assert route(slow, XNO_TOPS) is None
    fast_xno = {"USDT": TransferRule(settle_s=300.0, fee=1.0), "XNO": TransferRule(settle_s=1.0, fee=0.0)}
    assert route(fast_xno, {("a", "XNO/USDT"): XNO_TOPS[("a", "XNO/USDT")]}) is None
