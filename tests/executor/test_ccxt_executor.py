"""A live executor end to end: the real ``Executor`` with ``CcxtGateway`` (real ccxt) against the local fake
Binance venue, with real Redis and PostgreSQL: the flash-crash hedge the risk service decides opens a
margin short at the venue, money moved outside our orders halts the venue, and reports survive a venue
whose balances cannot be read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from services.executor.ccxt_gateway import CcxtGateway
from services.executor.gateway import Gateway, VenueBalance
from services.executor.gateways import build_gateway
from services.executor.service import Executor
from services.risk.hedge import Actions
from services.risk.record import Recorder
from services.risk.restore import wait_for_portfolio
from services.risk.service import RiskService, publish
from shared import halts
from shared.bus import RedisBus, connect_redis
from shared.config import Settings
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, RiskControl, RiskEvent, decode, encode, streams
from shared.sections.executor import CcxtVenue, ExecutorSettings
from shared.sections.risk import LimitOverride, RiskSettings
from shared.signing import RISK
from shared.storage import Database
from tests.control import KEYS, SIGNERS
from tests.executor.fake_venue.harness import fake_venue

pytestmark = pytest.mark.integration

T = TypeVar("T")
NS = 1_000_000_000
# Every limit of the live venue set explicitly (the live gate refuses anything less), wide enough for the tests.
LIMITS = {
    "max_order_notional": 10_000.0,
    "max_position_notional": 20_000.0,
    "max_gross_exposure": 50_000.0,
    "max_net_exposure": 50_000.0,
    "max_open_orders": 5,
    "orders_per_s": 5.0,
    "order_burst": 10,
    "price_band_bps": 300.0,
    "fee_buffer": 0.002,
}
VENUE = {"receive_window_ms": 400, "clock_skew_ms": 0, "lookup_backoff_s": 0.02, "timeout_ms": 3000}


def live_settings(venue: CcxtVenue, reconcile_interval_s: float = 600.0) -> Settings:
    """Live mode with every gate open: opted in, keys, every limit of the venue set explicitly.

    The heartbeat timeout is long: these tests run no risk service, and must not depend on machine speed.
    """
    return Settings(
        mode="live",
        live=True,
        bus={"block_ms": 50, "claim_idle_ms": 1000, "claim_interval_ms": 200},
        executor=ExecutorSettings(
            live_venues={"binance": venue},
            market_data_venues=["binance"],
            reconcile_interval_s=reconcile_interval_s,
        ),
        risk=RiskSettings(venues={"binance": LimitOverride(**LIMITS)}, heartbeat_timeout_s=3600),  # type: ignore[arg-type]
        control=KEYS,
    )


async def wait_for(probe: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Await ``probe()`` (sync or async) until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def messages(redis: Any, stream: str, kind: type[T]) -> list[T]:
    out = []
    for _, fields in await redis.xrange(stream):
        out += [m for m in decode(fields[streams.FIELD.encode()]) if isinstance(m, kind)]
    return out


async def final_event(redis: Any, cid: str) -> OrderEvent | None:
    events = await messages(redis, streams.ORDERS_EVENTS, OrderEvent)
    return next((e for e in events if e.client_order_id == cid and e.status in ("rejected", "filled")), None)


@asynccontextmanager
async def live_executor(
    isolated: tuple[str, str], settings: Settings, gateway: Gateway | None = None
) -> AsyncIterator[tuple[Executor, Any, Database]]:
    """A running live executor (ready: every consumer group exists), its Redis and its database."""
    dsn, rurl = isolated
    redis = connect_redis(rurl)
    db = await Database.connect(dsn, settings.storage)
    await db.migrate()
    gateway = gateway or build_gateway(settings, "t")  # through the live gate, as `tradewind executor` does
    executor = Executor(settings, redis, db, gateway, run_id="t")
    task = asyncio.create_task(executor.run())
    try:
        await asyncio.wait_for(executor.ready.wait(), 30)
        yield executor, redis, db
    finally:
        executor.stop()
        await task
        await gateway.close()
        await db.close()
        await redis.aclose()


def venue_book(book: dict[str, list[tuple[str, str]]]) -> BookUpdate:
    now = time.time_ns()
    bids = [(float(p), float(q)) for p, q in book["bids"]]
    asks = [(float(p), float(q)) for p, q in book["asks"]]
    return BookUpdate("binance", "BTC/USDT", 1, now, now, bids, asks, snapshot=True)


def crash(risk: RiskService, mid: float) -> tuple[Actions, BookUpdate]:
    """Feed the risk service 7 s of calm books on three venues, then binance BTC/USDT 3% down in one step
    (the others stay: a single-venue crash); return what it decides and binance's last book."""
    ts = time.time_ns() - 8 * NS

    def book(venue: str, symbol: str, price: float) -> BookUpdate:
        return BookUpdate(venue, symbol, ts, ts, ts, [(price - 0.5, 5.0)], [(price + 0.5, 5.0)], snapshot=True)

    for _ in range(70):
        ts += NS // 10
        for venue, symbol in (("coinbase", "BTC/USD"), ("kraken", "BTC/USD"), ("binance", "BTC/USDT")):
            assert risk.on_market([book(venue, symbol, mid)]).intents == []  # calm: nothing to do
    ts += NS // 10
    risk.on_market([book("coinbase", "BTC/USD", mid), book("kraken", "BTC/USD", mid)])
    crashed = book("binance", "BTC/USDT", round(mid * 0.97, 2))
    actions = risk.on_market([crashed])
    assert "crash_start" in [e.kind for e in actions.events], actions.events
    return actions, crashed


async def test_the_flash_crash_hedge_opens_a_margin_short_at_the_venue(isolated: tuple[str, str]) -> None:
    async with fake_venue(**VENUE) as (fake, cfg):
        settings = live_settings(cfg)
        async with live_executor(isolated, settings) as (executor, redis, db):
            # Live, the risk service starts from the venue's wallets, which the executor stored at start.
            risk = RiskService(settings)
            risk.use_portfolio(await wait_for_portfolio(db, settings, 10))
            assert risk.portfolio.spot("binance", "BTC") == 1.0 and risk.portfolio.margin_venues() == ["binance"]
            bus, recorder = RedisBus(redis, settings.bus), Recorder(RedisBus(redis, settings.bus), db, SIGNERS[RISK])
            await publish(bus, recorder, risk.tick())  # its heartbeat
            bids, asks = fake.book["BTCUSDT"]["bids"], fake.book["BTCUSDT"]["asks"]
            mid = round((float(bids[0][0]) + float(asks[0][0])) / 2, 2)
            actions, crashed = crash(risk, mid)
            (hedge,) = [i for i in actions.intents if not i.cancel]
            assert (hedge.exchange, hedge.side, hedge.margin_mode, hedge.reduce_only) == (
                "binance",
                "sell",
                "cross",
                False,
            )

            # The executor sees the same market (its guard prices the order), then the risk service's decisions.
            await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(crashed)})
            await wait_for(lambda: executor.guard.mids.get(("binance", "BTC/USDT"), mid) < mid, "the crashed book")
            await publish(bus, recorder, actions)
            done = await wait_for(lambda: final_event(redis, hedge.client_order_id), "the hedge's outcome")
            assert done.status == "filled", done

        # At the venue: BTC borrowed on cross margin and sold there — the short exists.
        (order,) = fake.orders_by_client_id(hedge.client_order_id)
        assert (order["_wallet"], order["side"], order["status"]) == ("cross", "SELL", "FILLED")
        sold = Decimal(order["executedQty"])
        assert sold == Decimal(repr(done.filled)) and float(sold) == pytest.approx(hedge.amount, rel=1e-3)
        assert fake.requests.index("POST /sapi/v1/margin/borrow-repay") < fake.requests.index(
            "POST /sapi/v1/margin/order"
        )
        debt = fake.borrowed[("cross", "BTC")]
        assert debt >= sold and fake.balances["cross"]["BTC"] - debt == -sold  # net short by what was sold
        assert fake.balances["cross"]["USDT"] == Decimal(5000) + Decimal(order["cummulativeQuoteQty"])
        assert fake.balances["spot"]["BTC"] == Decimal(1)  # the inventory it hedges is untouched
        risk.on_orders([hedge, done])  # the risk service reads the fill back: the hedge is on its books
        assert risk.portfolio.short_debt("binance", "BTC") == pytest.approx(float(sold))


async def test_money_moved_outside_our_orders_halts_the_venue_durably(isolated: tuple[str, str]) -> None:
    async with fake_venue(**VENUE) as (fake, cfg):
        settings = live_settings(cfg, reconcile_interval_s=0.2)
        async with live_executor(isolated, settings) as (_executor, redis, db):
            # seed_guard lists open orders once; the first audit lists them again after reading the balances
            # it takes as its reference: money moved after that request is a difference the next audit sees.
            await wait_for(lambda: fake.requests.count("GET /api/v3/openOrders") >= 2, "the first audit")
            assert await messages(redis, streams.RISK_CONTROL, RiskControl) == []  # our own start is no mismatch
            fake.move_funds("spot", "USDT", Decimal(-25))

            async def halt_issued() -> RiskControl | None:
                controls = await messages(redis, streams.RISK_CONTROL, RiskControl)
                return next((c for c in controls if c.action == "halt"), None)

            halt = await wait_for(halt_issued, "a reconcile halt on risk:control")
            assert (halt.exchange, halt.cause, halt.issued_by) == ("binance", "reconcile", "executor")
            assert "spot USDT" in halt.reason
            stored = await halts.load(redis, db)
            assert "reconcile:binance" in {h.id for h in stored}
            (event,) = [
                e for e in await messages(redis, streams.RISK_EVENTS, RiskEvent) if e.kind == "reconcile_mismatch"
            ]
            assert event.exchange == "binance" and event.severity == "critical"
            assert "binance spot USDT: venue has 99975" in str(event.detail["differences"])
            assert "our fills and loans say 100000" in str(event.detail["differences"])

            buy = OrderIntent("after-mismatch", "binance", "BTC/USDT", "buy", "market", 0.001, time.time_ns())
            await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(buy)})
            rejected = await wait_for(lambda: final_event(redis, "after-mismatch"), "the intent's outcome")
            assert (rejected.status, rejected.reason) == ("rejected", "risk.venue_halted")
        assert not fake.orders_by_client_id("after-mismatch")


class BalancesFailOnce(CcxtGateway):
    """The live gateway, except that the next ``balances()`` after ``fail_next()`` raises (a venue outage)."""

    def __init__(self, venues: dict[str, CcxtVenue]) -> None:
        super().__init__(venues)
        self.armed = False
        self.failed = 0

    def fail_next(self) -> None:
        self.armed = True

    async def balances(self) -> list[VenueBalance]:
        if self.armed:
            self.armed = False
            self.failed += 1
            raise ConnectionError("venue unreachable while reading balances")
        return await super().balances()


async def test_reports_are_stored_and_published_once_when_the_balances_cannot_be_read(
    isolated: tuple[str, str],
) -> None:
    async with fake_venue(websocket=False, **VENUE) as (fake, cfg):
        settings = live_settings(cfg)
        gateway = BalancesFailOnce({"binance": cfg})
        async with live_executor(isolated, settings, gateway) as (executor, redis, db):
            await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(venue_book(fake.book["BTCUSDT"]))})
            await wait_for(lambda: ("binance", "BTC/USDT") in executor.guard.mids, "the executor's first book")
            gateway.fail_next()
            for cid in ("f1", "f2"):  # f1's reports meet the outage; f2's flush after it proves f1 is not sent again
                buy = OrderIntent(cid, "binance", "BTC/USDT", "buy", "market", 0.01, time.time_ns())
                await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(buy)})
                done = await wait_for(lambda cid=cid: final_event(redis, cid), f"the outcome of {cid}")
                assert done.status == "filled", done
            assert gateway.failed == 1
            events = await messages(redis, streams.ORDERS_EVENTS, OrderEvent)
            assert [e.status for e in events if e.client_order_id == "f1"] == ["filled"]  # published once
            venue_fills = {f"{o['orderId']}" for o in fake.orders.values() if o["clientOrderId"] == "f1"}
            rows = await db.fetch("SELECT fill_id, amount FROM fills WHERE client_order_id = 'f1'")
            assert rows and {r["fill_id"].split("-")[0] for r in rows} == venue_fills
            assert sum(r["amount"] for r in rows) == Decimal("0.01")
            ledger = await db.fetch(
                "SELECT asset, delta FROM ledger WHERE kind = 'fill' AND ref = ANY($1::text[])",
                [r["fill_id"] for r in rows],
            )
            assert {r["asset"] for r in ledger} == {"BTC", "USDT"}
            assert sum(r["delta"] for r in ledger if r["asset"] == "BTC") == Decimal("0.01")


async def test_a_resting_order_filled_while_the_executor_was_down_is_stored_after_the_restart(
    isolated: tuple[str, str],
) -> None:
    """The executor stops with an order resting at the venue; someone trades against it before the next run
    starts. The next run stores the fill (orders, fills, ledger) and publishes it, and reconciles clean."""
    async with fake_venue(**VENUE) as (fake, cfg):
        settings = live_settings(cfg, reconcile_interval_s=0.2)
        bid = Decimal(fake.book["BTCUSDT"]["bids"][0][0])
        rest = OrderIntent("rest", "binance", "BTC/USDT", "buy", "limit", 0.01, time.time_ns(), price=float(bid))
        async with live_executor(isolated, settings) as (executor, redis, db):
            await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(venue_book(fake.book["BTCUSDT"]))})
            await wait_for(lambda: ("binance", "BTC/USDT") in executor.guard.mids, "the executor's first book")
            await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(rest)})
            resting = "SELECT 1 FROM orders WHERE client_order_id = 'rest' AND status = 'accepted'"
            await wait_for(lambda: db.fetch(resting), "the resting order stored as accepted")
        await fake.fill_resting("rest")  # no executor runs

        async with live_executor(isolated, settings) as (executor, redis, db):
            filled = await wait_for(lambda: final_event(redis, "rest"), "the fill reported after the restart")
            rows = await db.fetch("SELECT amount FROM fills WHERE client_order_id = 'rest'")
            (status,) = await db.fetch("SELECT status FROM orders WHERE client_order_id = 'rest'")
            # audits every 0.2 s: a few rounds after the fill, none found a difference
            audits = fake.requests.count("GET /api/v3/openOrders")
            await wait_for(lambda: fake.requests.count("GET /api/v3/openOrders") >= audits + 3, "three more audits")
            controls = await messages(redis, streams.RISK_CONTROL, RiskControl)
    assert (filled.status, filled.filled) == ("filled", pytest.approx(0.01))
    assert [r["amount"] for r in rows] == [Decimal("0.01")] and status["status"] == "filled"
    assert [c for c in controls if c.action == "halt"] == []
