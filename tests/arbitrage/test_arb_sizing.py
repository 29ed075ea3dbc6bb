"""Depth-aware sizing against cases computed by hand.

The cycle throughout: USDT -> BTC (buy BTC/USDT) -> ETH (buy ETH/BTC) -> USDT (sell ETH/USDT).
"""

from __future__ import annotations

import pytest

from services.executor.arbitrage.books import Book
from services.executor.arbitrage.cycles import BUY, SELL
from services.executor.arbitrage.markets import Market
from services.executor.arbitrage.sizing import Leg, simulate, size_cycle


def triangle(
    eth_usdt_bids: tuple[tuple[float, float], ...],
    fee: float = 0.0,
    btc_step: float = 0.0,
    eth_btc_step: float = 0.0,
    eth_usdt_min_notional: float = 0.0,
    eth_usdt_min_amount: float = 0.0,
) -> list[Leg]:
    btc_usdt = Market("BTC/USDT", "BTC", "USDT", fee, step=btc_step)
    eth_btc = Market("ETH/BTC", "ETH", "BTC", fee, step=eth_btc_step)
    eth_usdt = Market(
        "ETH/USDT", "ETH", "USDT", fee, min_notional=eth_usdt_min_notional, min_amount=eth_usdt_min_amount
    )
    return [
        Leg(btc_usdt, BUY, Book((), ((100.0, 1.0), (101.0, 5.0)))),
        Leg(eth_btc, BUY, Book((), ((0.05, 10.0),))),
        Leg(eth_usdt, SELL, Book(eth_usdt_bids, ())),
    ]


def test_depth_of_the_middle_leg_caps_the_size() -> None:
    # 0.5 BTC buys all 10 ETH at 0.05 (costing 50 USDT at 100), 10 ETH sell for 55 USDT.
    sized = size_cycle(triangle(((5.5, 100.0),)))
    assert sized is not None
    assert sized.start_amount == pytest.approx(50.0)
    assert sized.final_amount == pytest.approx(55.0)
    assert sized.profit == pytest.approx(5.0)
    assert [f.amount for f in sized.fills] == pytest.approx([0.5, 10.0, 10.0])
    assert [f.price for f in sized.fills] == pytest.approx([100.0, 0.05, 5.5])


def test_fees_apply_on_every_leg() -> None:
    fee = 0.001
    sized = size_cycle(triangle(((5.5, 100.0),), fee=fee))
    assert sized is not None
    # ETH/BTC's 10 ETH need 0.5 BTC received, i.e. 0.5 / 0.999 BTC bought for 50 / 0.999 USDT.
    start = 0.5 / (1 - fee) * 100.0
    final = 10.0 * (1 - fee) * 5.5 * (1 - fee)
    assert sized.start_amount == pytest.approx(start)
    assert sized.final_amount == pytest.approx(final)
    assert sized.profit == pytest.approx(final - start)


def test_stops_where_the_next_level_loses_money() -> None:
    # After 4 ETH the bid drops to 4.0: the marginal round trip is 0.01 * 20 * 4.0 = 0.8 < 1.
    sized = size_cycle(triangle(((5.5, 4.0), (4.0, 100.0))))
    assert sized is not None
    assert sized.start_amount == pytest.approx(20.0)
    assert sized.profit == pytest.approx(4 * 5.5 - 20.0)


def test_walks_a_second_level_that_still_pays() -> None:
    # The second level at 5.2 still returns 1.04 per unit, so all 10 ETH go: 4 at 5.5, 6 at 5.2.
    sized = size_cycle(triangle(((5.5, 4.0), (5.2, 100.0))))
    assert sized is not None
    assert sized.start_amount == pytest.approx(50.0)
    assert sized.profit == pytest.approx(4 * 5.5 + 6 * 5.2 - 50.0)
    assert sized.fills[2].price == 5.2  # the IOC limit is the worst level reached


def test_first_leg_lot_step_leaves_the_rest_unspent() -> None:
    # BTC in steps of 0.3: 50 USDT can only buy 0.3 BTC (30 USDT); the 20 USDT left are not spent.
    sized = size_cycle(triangle(((5.5, 100.0),), btc_step=0.3))
    assert sized is not None
    assert sized.fills[0].amount == pytest.approx(0.3)
    assert sized.start_amount == pytest.approx(30.0)
    assert sized.profit == pytest.approx(6.0 * 5.5 - 30.0)


def test_middle_leg_lot_step_shrinks_the_start_instead_of_stranding_dust() -> None:
    # ETH in steps of 4: 0.5 BTC would buy 10 ETH -> 8 ETH and strand 0.1 BTC (a loss of 6 USDT);
    # sized right, 40 USDT -> 0.4 BTC -> 8 ETH -> 44 USDT.
    legs = triangle(((5.5, 100.0),), eth_btc_step=4.0)
    naive = simulate(legs, 50.0)
    assert naive is not None and naive.profit == pytest.approx(8 * 5.5 - 50.0)
    sized = size_cycle(legs)
    assert sized is not None
    assert sized.start_amount == pytest.approx(40.0)
    assert sized.profit == pytest.approx(4.0)
    assert sized.fills[1].amount == pytest.approx(8.0)


def test_min_notional_rejects_a_cycle_too_thin_to_trade() -> None:
    # The profitable depth is 1 ETH at 5.5 (5.5 USDT); the last leg needs 10 USDT of notional.
    legs = triangle(((5.5, 1.0), (1.0, 100.0)), eth_usdt_min_notional=10.0)
    assert size_cycle(legs) is None
    legs = triangle(((5.5, 1.0), (1.0, 100.0)), eth_usdt_min_notional=5.0)
    sized = size_cycle(legs)
    assert sized is not None and sized.profit == pytest.approx(5.5 - 5.0)


def test_min_amount_rejects_a_cycle_below_the_minimum_quantity() -> None:
    legs = triangle(((5.5, 1.0), (1.0, 100.0)), eth_usdt_min_amount=2.0)
    assert size_cycle(legs) is None


def test_unprofitable_at_the_top_gets_no_size() -> None:
    assert size_cycle(triangle(((4.9, 100.0),))) is None


def test_profitable_at_the_top_but_not_after_fees() -> None:
    # 10% gross, minus three taker fees of 4%: 1.1 * 0.96**3 < 1
    assert size_cycle(triangle(((5.5, 100.0),), fee=0.04)) is None
