"""The risk service's decisions (fake clock, no servers): stale feeds, drawdown, margin, crash, state."""

from __future__ import annotations

import pytest

from services.risk.service import RiskService
from shared.config import Settings
from shared.schemas import BookUpdate, Fill, OrderEvent, OrderIntent, RiskControl, Status
from shared.sections.risk import CrashSettings, RiskSettings

SEC = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000 * SEC

    def __call__(self) -> int:
        return self.now


def service(**risk: object) -> tuple[RiskService, Clock]:
    clock = Clock()
    settings = Settings(
        risk=RiskSettings(crash=CrashSettings(warmup_s=1.0), **risk),
        executor={"initial_balances": {"binance": {"USDT": 10_000.0, "BTC": 1.0}}},
    )
    return RiskService(settings, clock), clock


def book(mid: float, ts: int, venue: str = "binance") -> BookUpdate:
    return BookUpdate(venue, "BTC/USDT", ts, ts, ts, [(mid - 0.5, 5.0)], [(mid + 0.5, 5.0)], snapshot=True)


def test_heartbeat_every_tick() -> None:
    svc, _ = service()
    controls = svc.tick().controls
    assert [c.action for c in controls] == ["heartbeat"]


def test_stale_feed_halts_the_venue_and_fresh_data_resumes_it() -> None:
    svc, clock = service(stale_after_s=10.0)
    svc.on_market([book(100.0, clock.now)])
    clock.now += 10 * SEC
    assert [c.action for c in svc.tick().controls] == ["heartbeat"]  # exactly at the limit: not stale
    clock.now += 1
    actions = svc.tick()
    halts = [c for c in actions.controls if c.action == "halt"]
    assert len(halts) == 1 and halts[0].exchange == "binance"
    assert [e.kind for e in actions.events] == ["halt"]
    again = svc.tick()  # halted once (one event), re-asserted with every heartbeat
    assert not again.events and [(c.action, c.cause) for c in again.controls] == [("heartbeat", ""), ("halt", "stale")]
    actions = svc.on_market([book(100.0, clock.now)])
    assert [(c.action, c.exchange) for c in actions.controls] == [("resume", "binance")]


def test_feed_gap_halts_until_resynced() -> None:
    svc, clock = service()
    actions = svc.on_market([Status("kraken", "gap", clock.now, "BTC/USD", "seq 5 after 3")])
    assert [(c.action, c.exchange) for c in actions.controls] == [("halt", "kraken")]
    assert actions.events[0].detail["detail"] == "seq 5 after 3"
    assert [(c.action, c.cause) for c in svc.tick().controls if c.action == "halt"] == [("halt", "feed")]
    assert not svc.on_market([book(100.0, clock.now, "kraken")]).controls  # data alone does not lift a gap
    assert svc.on_market([Status("kraken", "connected", clock.now)]).controls[0].action == "resume"
    assert not [c for c in svc.tick().controls if c.action == "halt"]


def test_drawdown_halts_everything() -> None:
    svc, clock = service(drawdown_intraday=0.05, drawdown_total=0.5)
    svc.on_market([book(10_000.0, clock.now)])  # equity 10k USDT + 1 BTC x 10k = 20k
    assert not [c for c in svc.tick().controls if c.action == "halt"]
    svc.on_market([book(9_000.0, clock.now)])  # 19k: -5% from the day's peak
    actions = svc.tick()
    halts = [c for c in actions.controls if c.action == "halt"]
    assert len(halts) == 1 and halts[0].exchange is None and "intraday" in halts[0].reason
    assert actions.events[0].kind == "drawdown_halt"
    assert svc.state()["drawdown_intraday"] == 0.05


def test_human_resume_after_a_drawdown_halt_accepts_the_loss() -> None:
    svc, clock = service(drawdown_intraday=0.05, drawdown_total=0.5)
    svc.on_market([book(10_000.0, clock.now)])
    svc.tick()
    svc.on_market([book(9_000.0, clock.now)])
    assert [c.action for c in svc.tick().controls if c.action == "halt"] == ["halt"]
    # its own controls and a venue resume leave the drawdown halt in place
    own = RiskControl("resume", clock.now, reason="feed connected", exchange=None, issued_by="risk")
    venue = RiskControl("resume", clock.now, exchange="binance", issued_by="cli:ops@host")
    assert not svc.on_control([own, venue]).events and svc.state()["halted"] == "intraday drawdown"
    # a plain human resume lifts human halts, not a drawdown halt whose loss nobody accepted
    assert not svc.on_control([RiskControl("resume", clock.now, reason="oops", issued_by="cli:ops@host")]).events
    assert svc.state()["halted"] == "intraday drawdown"
    assert [c.reason for c in svc.tick().controls if c.action == "halt"] == ["intraday drawdown"]  # re-asserted

    forced = RiskControl("resume", clock.now, reason="reviewed", issued_by="cli:ops@host", force=True)
    actions = svc.on_control([forced])
    assert [e.kind for e in actions.events] == ["drawdown_reset"]
    assert actions.events[0].detail["by"] == "cli:ops@host"
    assert svc.state()["halted"] == "" and svc.state()["drawdown_intraday"] == 0.0
    assert not [c for c in svc.tick().controls if c.action == "halt"]  # not halted again at once
    svc.on_market([book(8_500.0, clock.now)])  # 18.5k: -2.6% from the new peak of 19k
    assert not [c for c in svc.tick().controls if c.action == "halt"]
    svc.on_market([book(8_000.0, clock.now)])  # 18k: -5.3% from 19k
    assert [c.reason for c in svc.tick().controls if c.action == "halt"] == ["intraday drawdown"]


def test_human_halts_show_in_the_state() -> None:
    svc, clock = service()
    svc.on_market([book(10_000.0, clock.now)])
    human = "cli:ops@host"
    svc.on_control([RiskControl("halt", clock.now, reason="exchange incident", exchange="kraken", issued_by=human)])
    assert svc.state()["venues"]["kraken"]["halted"] == "exchange incident"
    assert svc.state()["halted"] == ""
    svc.on_control([RiskControl("halt", clock.now, reason="fat finger", issued_by=human)])
    assert svc.state()["halted"] == "fat finger"
    svc.on_control([RiskControl("resume", clock.now, exchange="kraken", issued_by=human)])
    assert "kraken" not in svc.state()["venues"]  # no balances, data or halt there any more
    assert svc.state()["halted"] == "fat finger"
    svc.on_control([RiskControl("resume", clock.now, issued_by=human)])
    assert svc.state()["halted"] == ""


def test_fills_move_balances_exposure_and_pnl() -> None:
    svc, clock = service()
    svc.on_market([book(100.0, clock.now)])
    fills = [Fill("f1", 100.0, 2.0, 0.2, "USDT", clock.now)]
    svc.on_orders([OrderEvent("o1", "binance", "BTC/USDT", "buy", "filled", clock.now, fills=fills)])
    svc.on_orders([OrderEvent("o1", "binance", "BTC/USDT", "buy", "filled", clock.now, fills=fills)])  # redelivered
    state = svc.state()["venues"]["binance"]
    assert state["gross_exposure"] == 3.0 * 100.0
    assert state["equity"] == 10_000.0 - 200.0 - 0.2 + 3.0 * 100.0
    svc.on_market([book(110.0, clock.now)])
    sold = [Fill("f2", 110.0, 1.0, 0.0, "USDT", clock.now)]
    svc.on_orders([OrderEvent("o2", "binance", "BTC/USDT", "sell", "filled", clock.now, fills=sold)])
    state = svc.state()["venues"]["binance"]
    assert state["realized_pnl"] == 10.0  # 1 of the 2 bought at 100 sold at 110 (earlier BTC: no known cost)
    assert state["unrealized_pnl"] == (110.0 - 100.0) * 1.0


def test_margin_level_below_floor_buys_back_without_spot_collateral() -> None:
    svc, clock = service(margin_floor=1.5, margin_target=2.0)
    svc.portfolio.balances["binance"]["USDT"] = 0.0  # nothing to top up with (tests/risk/test_risk_top_up.py)
    svc.on_market([book(100.0, clock.now)])
    short = OrderIntent("h1", "binance", "BTC/USDT", "sell", "ioc", 10.0, clock.now, margin_mode="cross")
    svc.on_orders([short])
    svc.on_orders(
        [
            OrderEvent(
                "h1",
                "binance",
                "BTC/USDT",
                "sell",
                "filled",
                clock.now,
                fills=[Fill("hf", 100.0, 10.0, 0.0, "USDT", clock.now)],
            )
        ]
    )
    assert svc.portfolio.margin_level("binance") == 1.0  # proceeds only, no collateral
    svc.portfolio.margin["binance"].quote += 500.0  # 1.5: at the floor, fine
    assert not svc.tick().intents
    svc.portfolio.margin["binance"].quote -= 1.0
    actions = svc.tick()
    assert [e.kind for e in actions.events] == ["margin_low"]
    (buy,) = actions.intents
    assert buy.side == "buy" and buy.reduce_only and buy.margin_mode == "cross"
    quote, debt, ask = 1499.0, 10.0, 100.5
    assert (quote - buy.amount * ask) / ((debt - buy.amount) * ask) == pytest.approx(2.0)
    assert not svc.tick().intents  # cooldown: one reduce at a time


def test_crash_blocks_buys_cancels_bids_and_hedges() -> None:
    svc, clock = service()
    svc.on_orders([OrderEvent("bid1", "binance", "BTC/USDT", "buy", "accepted", clock.now)])
    svc.on_orders([OrderIntent("m0", "binance", "BTC/USDT", "sell", "ioc", 0.0001, clock.now, margin_mode="cross")])
    svc.on_orders(
        [
            OrderEvent(
                "m0",
                "binance",
                "BTC/USDT",
                "sell",
                "filled",
                clock.now,
                fills=[Fill("m0f", 100.0, 0.0001, 0.0, "USDT", clock.now)],
            )
        ]
    )
    svc.portfolio.margin["binance"].quote += 10_000.0  # collateral
    for i in range(30):
        svc.on_market([book(100.0, clock.now + i * SEC // 10), book(100.0, clock.now + i * SEC // 10, "okx")])
    ts = clock.now + 3 * SEC
    actions = svc.on_market([book(100.0, ts, "okx"), book(96.0, ts)])
    assert [e.kind for e in actions.events][:2] == ["crash_start", "hedge_open"]
    assert actions.controls[0].limits == {"block_buys": 1.0}
    assert [i.client_order_id for i in actions.intents if i.cancel] == ["bid1"]
    (hedge,) = [i for i in actions.intents if not i.cancel]
    assert hedge.side == "sell" and hedge.exchange == "binance"
    assert hedge.amount + 0.0001 == pytest.approx(1.0)  # the 1 BTC held, less the short already open
    assert svc.state()["crashes"] == {"binance:BTC/USDT": "crash"}


def test_a_restored_portfolio_waits_for_its_marks_but_not_forever() -> None:
    """Restored peaks (30k) before the first book: BTC unpriced would read as a 50% loss. Within the grace
    nothing is measured; after it the drawdown is measured anyway (an asset never priced must not switch
    the kill switch off); with its mark the equity is whole."""
    from services.risk.portfolio import Portfolio

    svc, clock = service(stale_after_s=10.0)
    restored = Portfolio.from_balances({"binance": {"USDT": 15_000.0, "BTC": 1.0}})
    restored.peak_total = restored.peak_day = 30_000.0
    restored.day = clock.now // (86_400 * SEC)
    svc.use_portfolio(restored)
    assert not [c for c in svc.tick().controls if c.action == "halt"]
    clock.now += 11 * SEC  # the grace is over and BTC still has no price: 15k of 30k
    assert [c.cause for c in svc.tick().controls if c.action == "halt"] == ["drawdown"]
    svc2, clock2 = service(stale_after_s=10.0)
    whole = Portfolio.from_balances({"binance": {"USDT": 15_000.0, "BTC": 1.0}})
    whole.peak_total = whole.peak_day = 30_000.0
    whole.day = clock2.now // (86_400 * SEC)
    svc2.use_portfolio(whole)
    svc2.on_market([book(15_000.0, clock2.now)])
    clock2.now += 11 * SEC
    svc2.on_market([book(15_000.0, clock2.now)])
    assert not [c for c in svc2.tick().controls if c.action == "halt"]
