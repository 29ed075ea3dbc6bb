"""Every pre-trade rule accepts at its boundary and rejects just past it."""

from __future__ import annotations

import pytest

from shared import pretrade
from shared.pretrade import PreTradeGuard, missing_limits, resolve_limits
from shared.schemas import Fill, OrderEvent, OrderIntent, RiskControl
from shared.sections.risk import LimitOverride, Limits, RiskSettings

SEC = 1_000_000_000
UNLIMITED = Limits(
    max_order_notional=None,
    max_position_notional=None,
    max_gross_exposure=None,
    max_net_exposure=None,
    max_open_orders=None,
    orders_per_s=None,
    price_band_bps=None,
    fee_buffer=0.0,
)


def guard(**limits: float | int | None) -> PreTradeGuard:
    """A guard with every limit off but the ones named, a known mid of 100 and plenty of balance."""
    g = PreTradeGuard(RiskSettings(limits=UNLIMITED.model_copy(update=limits)), now_ns=0)
    for venue in ("binance", "kraken"):
        g.set_mid(venue, "BTC/USDT", 100.0)
        g.set_free(venue, "USDT", 1e9)
        g.set_free(venue, "BTC", 1e9)
    return g


def order(amount: float = 1.0, side: str = "buy", price: float | None = None, **kw: object) -> OrderIntent:
    return OrderIntent(
        client_order_id=f"c{amount}{side}{price}",
        exchange=kw.pop("exchange", "binance"),  # type: ignore[arg-type]
        symbol="BTC/USDT",
        side=side,  # type: ignore[arg-type]
        order_type="limit" if price is not None else "market",
        amount=amount,
        price=price,
        ts=0,
        **kw,  # type: ignore[arg-type]
    )


def test_max_order_notional_boundary() -> None:
    g = guard(max_order_notional=100.0)
    assert g.check(order(1.0), 1) is None
    assert g.check(order(1.01), 1) == pretrade.MAX_NOTIONAL
    assert g.check(order(1.0, price=100.5), 1) == pretrade.MAX_NOTIONAL  # the limit price, not the mid, counts


def test_price_band_boundary() -> None:
    g = guard(price_band_bps=100.0)  # 1% of the mid 100
    assert g.check(order(0.5, price=101.0), 1) is None
    assert g.check(order(0.5, price=99.0, side="sell"), 1) is None
    assert g.check(order(0.5, price=101.01), 1) == pretrade.PRICE_BAND
    assert g.check(order(0.5, price=98.99, side="sell"), 1) == pretrade.PRICE_BAND


def test_max_open_orders_boundary() -> None:
    g = guard(max_open_orders=2)
    accepted = OrderEvent("a", "binance", "BTC/USDT", "buy", "accepted", 0)
    g.on_order_event(accepted)
    assert g.check(order(1.0, price=100.0), 1) is None
    g.on_order_event(OrderEvent("b", "binance", "BTC/USDT", "buy", "accepted", 0))
    assert g.check(order(1.0, price=100.0), 1) == pretrade.MAX_OPEN_ORDERS
    assert g.check(order(1.0), 1) is None  # a market order never rests
    g.on_order_event(OrderEvent("b", "binance", "BTC/USDT", "buy", "cancelled", 0))
    assert g.check(order(1.0, price=100.0), 1) is None


def test_max_position_per_asset_and_venue() -> None:
    g = guard(max_position_notional=300.0)
    g.set_position("binance", "BTC", 2.0)
    assert g.check(order(1.0), 1) is None  # 3 BTC x 100 = 300
    assert g.check(order(1.5), 1) == pretrade.MAX_POSITION
    assert g.check(order(1.5, exchange="kraken"), 1) is None  # other venue, own position
    g.set_position("binance", "BTC", 5.0)
    assert g.check(order(1.0, side="sell"), 1) is None  # reducing is always allowed


def test_position_limit_per_symbol_override() -> None:
    risk = RiskSettings(limits=UNLIMITED, symbols={"binance:BTC/USDT": LimitOverride(max_position_notional=150.0)})
    g = PreTradeGuard(risk)
    g.set_mid("binance", "BTC/USDT", 100.0)
    g.set_free("binance", "USDT", 1e9)
    assert g.check(order(1.5), 0) is None
    assert g.check(order(1.6), 0) == pretrade.MAX_POSITION
    assert resolve_limits(risk, "kraken", "BTC/USDT").max_position_notional is None


def test_gross_exposure_boundary() -> None:
    g = guard(max_gross_exposure=500.0)
    g.set_mid("binance", "ETH/USDT", 50.0)
    g.set_position("binance", "ETH", -4.0)  # |-200|
    assert g.check(order(3.0), 1) is None  # 200 + 300 = 500
    assert g.check(order(3.1), 1) == pretrade.MAX_GROSS


def test_net_exposure_boundary() -> None:
    g = guard(max_net_exposure=250.0)
    g.set_mid("binance", "ETH/USDT", 50.0)
    g.set_position("binance", "ETH", 3.0)  # +150
    assert g.check(order(1.0), 1) is None  # 150 + 100 = 250
    assert g.check(order(1.1), 1) == pretrade.MAX_NET
    g.set_position("binance", "ETH", -10.0)  # -500 net: a buy reduces it, so it passes
    assert g.check(order(1.1), 1) is None


def test_balance_sufficiency() -> None:
    g = guard(fee_buffer=0.01)
    g.set_free("binance", "USDT", 101.0)
    g.set_free("binance", "BTC", 0.5)
    assert g.check(order(1.0), 1) is None  # 100 + 1% fee buffer
    g.set_free("binance", "USDT", 100.99)
    assert g.check(order(1.0), 1) == pretrade.INSUFFICIENT_BALANCE
    assert g.check(order(0.5, side="sell"), 1) is None
    assert g.check(order(0.51, side="sell"), 1) == pretrade.INSUFFICIENT_BALANCE
    assert g.check(order(0.51, side="sell", margin_mode="cross"), 1) is None  # a margin sell borrows
    g.set_margin_level("binance", 1.49)
    assert g.check(order(0.51, side="sell", margin_mode="cross"), 1) == pretrade.MARGIN_LEVEL
    g.set_position("binance", "BTC", -0.5)  # a margin short: buying its debt back reduces it
    assert g.check(order(0.5, side="buy", margin_mode="cross", reduce_only=True), 1) is None
    g.set_mid("okx", "BTC/USDT", 100.0)
    assert g.check(order(1.0, exchange="okx"), 1) == pretrade.BALANCE_UNKNOWN


def test_fills_update_position_and_balances() -> None:
    g = guard(max_position_notional=150.0)
    g.set_free("binance", "USDT", 200.0)
    fill = Fill("f1", 100.0, 1.0, 0.0, "BTC", 0)
    g.on_order_event(OrderEvent("x", "binance", "BTC/USDT", "buy", "filled", 0, fills=[fill]))
    assert g.venue("binance").free["USDT"] == 100.0
    assert g.check(order(0.5), 1) is None
    assert g.check(order(0.6), 1) == pretrade.MAX_POSITION


def test_order_rate_token_bucket() -> None:
    g = guard(orders_per_s=2.0, order_burst=3)
    assert [g.check(order(0.1), 0) for _ in range(4)] == [None, None, None, pretrade.RATE_LIMIT]
    assert g.check(order(0.1), SEC // 2 - 1) == pretrade.RATE_LIMIT  # just under one token refilled
    assert g.check(order(0.1), SEC // 2) is None
    assert g.check(order(0.1, exchange="kraken"), SEC // 2) is None  # buckets are per venue


def test_no_price_rejected() -> None:
    g = guard()
    intent = OrderIntent("n", "binance", "ETH/USDT", "buy", "market", 1.0, 0)
    assert g.check(intent, 1) == pretrade.NO_PRICE


def test_halt_global_and_venue_and_resume() -> None:
    g = guard()
    g.on_control(RiskControl("halt", 1, reason="manual"), 1)
    assert g.check(order(1.0), 1) == pretrade.HALTED
    cancel = OrderIntent("c", "binance", "BTC/USDT", "buy", "limit", 1.0, 0, cancel=True)
    assert g.check(cancel, 1) is None  # cancels always go out
    g.set_position("binance", "BTC", 1.0)
    assert g.check(order(1.0, side="sell", margin_mode="cross", reduce_only=True), 1) is None  # nor do reductions
    g.on_control(RiskControl("resume", 2), 2)
    assert g.check(order(1.0), 2) is None
    g.on_control(RiskControl("halt", 3, exchange="binance", reason="stale"), 3)
    assert g.check(order(1.0), 3) == pretrade.VENUE_HALTED
    assert g.check(order(1.0, exchange="kraken"), 3) is None
    g.on_control(RiskControl("resume", 4, exchange="binance"), 4)
    assert g.check(order(1.0), 4) is None


def test_crash_blocks_buys_but_not_sells_or_reducing_buys() -> None:
    g = guard()
    g.on_control(RiskControl("set_limit", 1, exchange="binance", limits={"block_buys": 1.0}, reason="crash"), 1)
    assert g.check(order(1.0), 1) == pretrade.CRASH_NO_BUY
    assert g.check(order(1.0, side="sell"), 1) is None
    g.set_position("binance", "BTC", -1.0)
    assert g.check(order(1.0, margin_mode="cross", reduce_only=True), 1) is None
    g.on_control(RiskControl("set_limit", 2, exchange="binance", limits={"block_buys": 0.0}), 2)
    assert g.check(order(1.0), 2) is None


def test_heartbeat_timeout_boundary() -> None:
    g = guard()  # heartbeat_timeout_s defaults to 5
    g.on_control(RiskControl("heartbeat", 0), 10 * SEC)
    assert g.check(order(1.0), 15 * SEC) is None
    assert g.check(order(1.0), 15 * SEC + 1) == pretrade.HEARTBEAT_LOST
    g.set_position("binance", "BTC", 1.0)
    assert g.check(order(1.0, side="sell", reduce_only=True), 15 * SEC + 1) is None
    g.on_control(RiskControl("heartbeat", 0), 16 * SEC)
    assert g.check(order(1.0), 16 * SEC) is None


def test_heartbeat_not_required_is_enforced_from_the_first_heartbeat_only() -> None:
    g = PreTradeGuard(RiskSettings(limits=UNLIMITED), now_ns=0, heartbeat_required=False)
    g.set_mid("binance", "BTC/USDT", 100.0)
    g.set_free("binance", "USDT", 1e9)
    assert g.check(order(1.0), 60 * SEC) is None  # no risk service yet: paper trading goes on
    g.on_control(RiskControl("halt", 0, issued_by="cli"), 61 * SEC)
    g.on_control(RiskControl("resume", 0, issued_by="cli"), 62 * SEC)
    assert g.check(order(1.0), 120 * SEC) is None  # a human's halt/resume is not a heartbeat
    g.on_control(RiskControl("heartbeat", 0), 130 * SEC)
    assert g.check(order(1.0), 135 * SEC) is None
    assert g.check(order(1.0), 135 * SEC + 1) == pretrade.HEARTBEAT_LOST  # heard once, then silent


def every_limit(**changes: float | None) -> LimitOverride:
    """A venue override that sets every limit field explicitly (what live trading requires)."""
    values: dict[str, float | None] = {
        "max_order_notional": 500.0,
        "max_position_notional": 1_000.0,
        "max_gross_exposure": 2_000.0,
        "max_net_exposure": 1_500.0,
        "max_open_orders": 5,
        "orders_per_s": 2.0,
        "order_burst": 4,
        "price_band_bps": 100.0,
        "fee_buffer": 0.002,
    }
    return LimitOverride(**{**values, **changes})  # type: ignore[arg-type]


def test_live_limits_must_be_set_per_venue_field_by_field() -> None:
    assert missing_limits(RiskSettings(), ["binance"])  # defaults are for paper only
    # risk.limits set explicitly is still not a per-venue decision: no fallback to it
    assert "binance: limits not set" in missing_limits(RiskSettings(limits=Limits()), ["binance"])[0]
    one_field = missing_limits(RiskSettings(venues={"binance": LimitOverride(max_order_notional=10.0)}), ["binance"])
    assert "max_order_notional" not in one_field[0].split("(")[0]  # the field that is set is not named...
    assert "TRADEWIND_RISK__VENUES__binance__orders_per_s" in one_field[0]  # ...each missing one is, by its variable
    assert missing_limits(RiskSettings(venues={"binance": every_limit()}), ["binance"]) == []
    unlimited = missing_limits(RiskSettings(venues={"binance": every_limit(max_open_orders=None)}), ["binance"])
    assert unlimited == [
        "binance: unlimited max_open_orders (set TRADEWIND_RISK__VENUES__binance__max_open_orders to a number)"
    ]
    two = RiskSettings(venues={"binance": every_limit()})
    assert missing_limits(two, ["binance", "kraken"])[0].startswith("kraken: limits not set")
    lifted = RiskSettings(
        venues={"binance": every_limit()}, symbols={"binance:BTC/USDT": LimitOverride(price_band_bps=None)}
    )
    assert "symbol override 'binance:BTC/USDT' makes price_band_bps unlimited" in missing_limits(lifted, ["binance"])[0]
    assert missing_limits(lifted, ["kraken"])[0].startswith("kraken: limits not set")  # that override is binance's
    tighter = RiskSettings(venues={"binance": every_limit()}, symbols={"BTC/USDT": LimitOverride(max_open_orders=2)})
    assert missing_limits(tighter, ["binance"]) == []


def test_reduce_only_must_reduce_the_position_it_claims() -> None:
    g = guard()
    sell, buy = order(0.5, side="sell", reduce_only=True), order(0.5, side="buy", margin_mode="cross", reduce_only=True)
    assert g.check(sell, 1) == pretrade.NOT_REDUCING  # nothing held: nothing to reduce
    assert g.check(buy, 1) == pretrade.NOT_REDUCING
    g.on_order_event(
        OrderEvent("f", "binance", "BTC/USDT", "buy", "filled", 0, fills=[Fill("f1", 100.0, 0.5, 0.0, "BTC", 0)])
    )
    assert g.check(sell, 1) is None  # sells the 0.5 held
    assert g.check(order(0.51, side="sell", reduce_only=True), 1) == pretrade.NOT_REDUCING  # past it: a new short
    assert g.check(buy, 1) == pretrade.NOT_REDUCING  # same side adds
    assert g.check(order(0.5, side="sell", reduce_only=True, exchange="kraken"), 1) == pretrade.NOT_REDUCING
    g.set_position("binance", "BTC", -0.5)  # a margin short (borrowed BTC sold): buying back the debt reduces it
    assert g.check(buy, 1) is None
    assert g.check(order(0.6, side="buy", margin_mode="cross", reduce_only=True), 1) == pretrade.NOT_REDUCING
    assert g.check(sell, 1) == pretrade.NOT_REDUCING
    g.on_control(RiskControl("halt", 2, reason="manual"), 2)  # a halt still lets a real reduction through...
    assert g.check(buy, 2) is None
    assert g.check(sell, 2) == pretrade.NOT_REDUCING  # ...and nothing that claims to be one


@pytest.mark.parametrize("symbol", ["BTCUSDT", "/USDT", "BTC/"])
def test_bad_symbol_named(symbol: str) -> None:
    with pytest.raises(ValueError, match=symbol.replace("/", ".")):
        pretrade.split_symbol(symbol)


def test_limit_changes_from_risk_control_persist_when_risk_goes_silent() -> None:
    g = guard(max_order_notional=1_000.0)
    assert g.check(order(1.0), 0) is None
    g.on_control(RiskControl("set_limit", 0, exchange="binance", limits={"max_order_notional": 50.0}), 0)
    assert g.check(order(0.5), 0) is None
    assert g.check(order(0.6), 0) == pretrade.MAX_NOTIONAL
    assert g.check(order(1.0, exchange="kraken"), 0) is None  # that venue only
    g.on_control(RiskControl("set_limit", 0, limits={"max_order_notional": 80.0}), 0)  # every venue
    assert g.check(order(0.9, exchange="kraken"), 0) == pretrade.MAX_NOTIONAL
    assert g.check(order(0.6), 0) == pretrade.MAX_NOTIONAL  # the venue's own change still wins there
    late = 10 * SEC  # the risk service is silent: new orders stop, the last limits still apply to reductions
    assert g.check(order(0.5), late) == pretrade.HEARTBEAT_LOST
    g.set_position("binance", "BTC", 1.0)
    assert g.check(order(0.6, side="sell", reduce_only=True), late) == pretrade.MAX_NOTIONAL
    assert g.check(order(0.5, side="sell", reduce_only=True), late) is None


def test_margin_buy_back_reduces_a_short_that_spot_inventory_nets_out() -> None:
    """A hedge: spot long 1, margin short 1 (net 0). Buying back the margin debt reduces the short."""
    g = guard(fee_buffer=0.002)
    g.set_position("binance", "BTC", 1.0)
    hedge = order(1.0, side="sell", margin_mode="cross")
    assert g.check(hedge, 1) is None
    g.on_order_event(
        OrderEvent(
            hedge.client_order_id,
            "binance",
            "BTC/USDT",
            "sell",
            "filled",
            0,
            fills=[Fill("h", 100.0, 1.0, 0.1, "USDT", 0)],
        )
    )
    assert g.venue("binance").positions["BTC"] == 0.0
    back = order(1.0, side="buy", margin_mode="cross", reduce_only=True)
    assert g.check(back, 1) is None
    assert g.check(order(1.0, side="buy", reduce_only=True), 1) == pretrade.NOT_REDUCING  # a spot buy adds
    assert g.check(order(1.002, side="buy", margin_mode="cross", reduce_only=True), 1) is None  # + interest, fees
    assert g.check(order(1.0021, side="buy", margin_mode="cross", reduce_only=True), 1) == pretrade.NOT_REDUCING
