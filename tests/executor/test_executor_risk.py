"""The risk library wired into the real executor: kill switch, heartbeat, runtime limits, status.

The executor runs in-process on real Redis and PostgreSQL, fed a recorded Binance book; halts and
limit changes arrive on ``risk:control`` as `tradewind halt` / the risk service send them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from services.executor.cli import collect, halt_state
from services.executor.gateway import PaperGateway
from services.executor.guarding import guarded_limits
from services.executor.service import Executor
from services.risk.cli import send_control
from services.risk.service import run as run_risk
from shared import halts
from shared.bus import connect_redis
from shared.config import Settings
from shared.paper import PaperExchange
from shared.paper.recorded import read_binance_capture
from shared.pretrade import resolve_limits
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, RiskControl, decode, encode, streams
from shared.signing import RISK
from shared.storage import Database
from tests.control import KEYS, signed

CAPTURE = Path(__file__).parent.parent / "data" / "executor" / "binance_btcusdt_20240809_20s.gz"
FAST_BUS = {"block_ms": 50, "claim_idle_ms": 1000, "claim_interval_ms": 200}
ORDER_LATENCY_MS = 400  # long enough that an order sent just before a halt is acknowledged after it
NS = 1_000_000_000


def market(cid: str, side: str = "buy", amount: float = 0.001, **kw: Any) -> OrderIntent:
    return OrderIntent(cid, "binance", "BTC/USDT", side, "market", amount, time.time_ns(), **kw)  # type: ignore[arg-type]


async def publish(redis: Redis, stream: str, message: OrderIntent | RiskControl, role: str = RISK) -> bytes:
    """Append ``message``; a control signed as ``role`` (an unsigned one would be refused)."""
    if isinstance(message, RiskControl):
        message = signed(message, role)
    return await redis.xadd(stream, {streams.FIELD: encode(message)})  # type: ignore[return-value]


async def event(redis: Redis, cid: str, status: str, timeout: float = 10.0) -> OrderEvent:
    """The first ``status`` event of order ``cid`` on orders:events."""
    deadline = time.monotonic() + timeout
    while True:
        seen = []
        for _, fields in await redis.xrange(streams.ORDERS_EVENTS):  # type: ignore[union-attr]
            for m in decode(fields[streams.FIELD.encode()]):  # type: ignore[index,arg-type]
                if isinstance(m, OrderEvent) and m.client_order_id == cid:
                    if m.status == status:
                        return m
                    seen.append((m.status, m.reason))
        assert time.monotonic() < deadline, f"no {status!r} event for {cid} within {timeout}s; saw {seen}"
        await asyncio.sleep(0.02)


class Running:
    """An executor task on an isolated database and Redis, fed the recorded book."""

    def __init__(self, settings: Settings, redis: Redis, db: Database) -> None:
        self.exchange = PaperExchange(settings.executor.venues, seed=1, id_prefix="R-")
        self.executor = Executor(settings, redis, db, PaperGateway(self.exchange), run_id="risk")
        self.redis = redis
        self.control_group = f"{settings.executor.group}-control"

    async def start(self) -> asyncio.Task[None]:
        task = asyncio.create_task(self.executor.run())
        await asyncio.wait_for(self.executor.ready.wait(), 20)
        snap = next(m for m in read_binance_capture(CAPTURE) if isinstance(m, BookUpdate))
        await self.redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(snap)})
        deadline = time.monotonic() + 20
        while self.exchange.book("binance", "BTC/USDT").mid() is None:
            assert time.monotonic() < deadline, "the executor never applied the book snapshot"
            await asyncio.sleep(0.01)
        return task

    def mid(self) -> float:
        return float(self.exchange.book("binance", "BTC/USDT").mid())  # type: ignore[arg-type]


@pytest.fixture
async def servers(isolated: tuple[str, str]) -> AsyncIterator[tuple[str, str, Redis, Database]]:
    dsn, rurl = isolated
    redis = connect_redis(rurl)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    yield dsn, rurl, redis, db
    await db.close()
    await redis.aclose()


@pytest.mark.integration
async def test_kill_switch_rejects_the_next_intent_cancels_resting_orders_and_resume_restores(
    servers: tuple[str, str, Redis, Database],
) -> None:
    dsn, rurl, redis, db = servers
    latency = {"order_latency_ms": ORDER_LATENCY_MS, "report_latency_ms": 5, "latency_jitter_ms": 0}
    settings = Settings(
        mode="replay",
        bus=FAST_BUS,
        executor={"strategy_enabled": False, "market_data_venues": ["binance"], "venues": {"binance": latency}},
        control=KEYS,
    )
    run = Running(settings, redis, db)
    task = await run.start()
    try:
        await publish(redis, streams.ORDERS_INTENTS, market("held"))  # a position the reduce-only order reduces
        await event(redis, "held", "filled")
        bid = round(run.mid() * 0.995, 2)  # under the touch (rests), inside the 2% price band
        rest = [
            OrderIntent(f"rest-{n}", "binance", "BTC/USDT", "buy", "limit", 0.001, time.time_ns(), price=bid)
            for n in (1, 2)
        ]
        await publish(redis, streams.ORDERS_INTENTS, rest[0])
        await event(redis, "rest-1", "accepted")
        await publish(redis, streams.ORDERS_INTENTS, rest[1])
        while not await db.fetch("SELECT 1 FROM orders WHERE client_order_id = 'rest-2'"):
            await asyncio.sleep(0.005)  # rest-2 is on its way to the venue: the halt overtakes it

        halt = RiskControl("halt", time.time_ns(), reason="test kill switch", issued_by="test")
        sent = await send_control(settings, rurl, dsn, halt, wait_s=5.0)  # what `tradewind halt` does
        assert (sent["confirmed_by"], sent["not_confirmed"]) == ([run.control_group], [])  # in force: acked
        acked_ns = time.time_ns()
        await publish(redis, streams.ORDERS_INTENTS, market("after-halt"))
        await publish(redis, streams.ORDERS_INTENTS, market("reduce", "sell", reduce_only=True))

        rejected = await event(redis, "after-halt", "rejected")
        assert rejected.reason == "risk.halted"
        assert (await event(redis, "reduce", "filled")).filled == 0.001  # reducing risk stays allowed
        cancelled = await event(redis, "rest-1", "cancelled")
        # the cancel reached the venue one order latency after it was sent: before the halt was acked
        assert cancelled.ts <= acked_ns + ORDER_LATENCY_MS * 1_000_000
        assert (await event(redis, "rest-2", "accepted")).ts > halt.ts  # acknowledged after the halt...
        await event(redis, "rest-2", "cancelled")  # ...and cancelled then
        status = await collect(dsn)
        assert status["risk"]["halted"] is True and status["risk"]["source"] == "postgres"
        assert status["risk"]["last_switch"]["detail"]["reason"] == "test kill switch"

        resume = RiskControl("resume", time.time_ns(), issued_by="test")
        assert (await send_control(settings, rurl, dsn, resume, wait_s=5.0))["confirmed_by"] == [run.control_group]
        await publish(redis, streams.ORDERS_INTENTS, market("after-resume"))
        assert (await event(redis, "after-resume", "filled")).filled == 0.001
    finally:
        run.executor.stop()
        await task
    rows = {r["client_order_id"]: r["status"] for r in await db.fetch("SELECT client_order_id, status FROM orders")}
    assert rows == {
        "held": "filled",
        "rest-1": "cancelled",
        "rest-2": "cancelled",
        "after-halt": "rejected",
        "reduce": "filled",
        "after-resume": "filled",
    }
    assert (await collect(dsn))["risk"]["halted"] is False


@pytest.mark.integration
async def test_silent_risk_service_halts_new_orders_and_its_last_limits_stay_enforced(
    servers: tuple[str, str, Redis, Database], uid: str
) -> None:
    dsn, rurl, redis, db = servers
    timeout_s = 0.8
    settings = Settings(
        mode="replay",
        redis_url=rurl,
        database_url=dsn,
        bus=FAST_BUS,
        executor={"strategy_enabled": False, "market_data_venues": ["binance"]},
        risk={
            "heartbeat_s": 0.1,
            "heartbeat_timeout_s": timeout_s,
            "stale_after_s": 120,
            "group": f"risk-{uid}",
            "market_data_venues": ["binance"],
        },
        control=KEYS,
    )
    run = Running(settings, redis, db)
    guard = run.executor.guard
    task = await run.start()
    risk_stopping = asyncio.Event()
    risk_task = asyncio.create_task(run_risk(settings, risk_stopping))
    try:
        # replay: no risk service needed; it buys what the reduce-only sells below reduce
        await publish(redis, streams.ORDERS_INTENTS, market("before-risk", amount=0.003))
        await event(redis, "before-risk", "filled")
        while guard.last_heartbeat_ns is None:
            await asyncio.sleep(0.01)
        status = await collect(dsn, rurl)  # the risk service's own state, through Redis
        assert status["risk"]["source"] == "redis" and "binance" in status["risk"]["state"]["venues"]

        # a runtime limit from risk:control: 0.002 BTC is worth more than 100 USDT
        assert run.mid() * 0.002 > 100 > run.mid() * 0.001
        limit = await publish(
            redis, streams.RISK_CONTROL, RiskControl("set_limit", time.time_ns(), limits={"max_order_notional": 100})
        )
        confirmed = await halts.confirmations(redis, limit.decode(), 5.0)
        assert run.control_group in confirmed.confirmed_by and not confirmed.not_confirmed
        await publish(redis, streams.ORDERS_INTENTS, market("too-big", amount=0.002))
        assert (await event(redis, "too-big", "rejected")).reason == "risk.max_notional"

        risk_stopping.set()  # the risk service dies
        await risk_task
        await asyncio.sleep(timeout_s + 0.3)
        await publish(redis, streams.ORDERS_INTENTS, market("silent"))
        await publish(redis, streams.ORDERS_INTENTS, market("silent-reduce", "sell", reduce_only=True))
        await publish(redis, streams.ORDERS_INTENTS, market("silent-reduce-big", "sell", 0.002, reduce_only=True))
        assert (await event(redis, "silent", "rejected")).reason == "risk.heartbeat_lost"
        await event(redis, "silent-reduce", "filled")
        assert (await event(redis, "silent-reduce-big", "rejected")).reason == "risk.max_notional"
        status = await collect(dsn, rurl)
        assert status["risk"]["state_age_s"] > timeout_s  # the last state it wrote, visibly old

        risk_stopping = asyncio.Event()  # the risk service comes back: trading resumes
        risk_task = asyncio.create_task(run_risk(settings, risk_stopping))
        while guard.heartbeat_lost(time.time_ns()):
            await asyncio.sleep(0.01)
        await publish(redis, streams.ORDERS_INTENTS, market("back"))
        await event(redis, "back", "filled")
    finally:
        risk_stopping.set()
        await risk_task
        run.executor.stop()
        await task


def test_no_fee_buffer_where_the_venue_takes_fees_from_what_an_order_receives() -> None:
    settings = Settings(risk={"limits": {"fee_buffer": 0.003}, "venues": {"okx": {"fee_buffer": 0.001}}})
    risk = guarded_limits(settings)
    assert settings.executor.venues["binance"].fee_in == "received"  # buying ETH with BTC spends exactly the BTC
    assert resolve_limits(risk, "binance", "ETH/BTC").fee_buffer == 0.0
    assert settings.executor.venues["coinbase"].fee_in == "quote"  # the fee comes on top of the notional
    assert resolve_limits(risk, "coinbase", "BTC/USD").fee_buffer == 0.003
    assert resolve_limits(risk, "okx", "BTC/USDT").fee_buffer == 0.001  # set explicitly: kept


def test_status_halts_come_from_the_durable_halt_set() -> None:
    def halt(cause: str, exchange: str | None, reason: str) -> dict[str, Any]:
        return {"id": f"{cause}:{exchange or '*'}", "cause": cause, "exchange": exchange, "reason": reason, "ts": 1}

    last = {"kind": "resume", "ts": 3, "exchange": None, "detail": json.dumps({"reason": "ok"})}
    state = halt_state([halt("feed", "kraken", "feed gap"), halt("human", "kraken", "incident")], last)
    assert state["halted"] is False and state["halted_venues"] == {"kraken": "feed gap; incident"}
    assert state["last_switch"]["detail"] == {"reason": "ok"}  # a resume of every venue left the feed halt
    drawdown = halt_state([halt("drawdown", None, "total drawdown")], None)
    assert drawdown["halted"] is True and drawdown["halted_reason"] == "total drawdown"
    assert [h["id"] for h in drawdown["halts"]] == ["drawdown:*"]


async def test_a_restarted_executor_lets_a_hedge_buy_back_reduce_its_margin_short() -> None:
    """Spot long + margin short net to zero; after a restart the guard must still see the short, or the
    hedge could never be unwound (risk.not_reducing)."""
    from decimal import Decimal

    from services.executor.gateway import PaperGateway
    from services.executor.service import Executor
    from shared.paper import PaperExchange
    from shared.paper.positions import Position

    settings = Settings(mode="replay", executor={"strategy_enabled": False, "rl_enabled": False})
    exchange = PaperExchange(settings.executor.venues, seed=1)
    exchange.positions[("binance", "BTC/USDT", "spot")] = Position("binance", "BTC/USDT", "spot", Decimal(1))
    exchange.positions[("binance", "BTC/USDT", "cross")] = Position("binance", "BTC/USDT", "cross", Decimal(-1))
    executor = Executor(settings, None, None, PaperGateway(exchange))  # type: ignore[arg-type]
    await executor.seed_guard()
    executor.guard.set_mid("binance", "BTC/USDT", 100.0)
    buy_back = OrderIntent(
        "bb-1", "binance", "BTC/USDT", "buy", "market", 0.5, 0, margin_mode="cross", reduce_only=True
    )
    assert executor.guard.check(buy_back, time.time_ns()) is None
    too_much = OrderIntent(
        "bb-2", "binance", "BTC/USDT", "buy", "market", 2.0, 0, margin_mode="cross", reduce_only=True
    )
    assert executor.guard.check(too_much, time.time_ns()) == "risk.not_reducing"


@pytest.mark.integration
async def test_a_halt_is_confirmed_only_once_the_order_checked_before_it_is_placed_and_cancelled(
    servers: tuple[str, str, Redis, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order that passed the guard just before a halt is still on its way to the venue (a slow HTTP
    request): `tradewind halt` must not return before it is placed and cancelled, or the venue would accept
    it after the operator was told the halt is in force."""
    dsn, rurl, redis, db = servers
    settings = Settings(
        mode="replay",
        bus=FAST_BUS,
        executor={"strategy_enabled": False, "market_data_venues": ["binance"]},
        control=KEYS,
    )
    run = Running(settings, redis, db)
    task = await run.start()
    entered, release = asyncio.Event(), asyncio.Event()
    submit = run.executor.gateway.submit
    order: list[str] = []

    async def slow_submit(intent: OrderIntent) -> None:
        if intent.client_order_id == "slow" and not intent.cancel:
            entered.set()
            await release.wait()  # the request is in flight
            await submit(intent)
            order.append("placed")
        else:
            await submit(intent)

    monkeypatch.setattr(run.executor.gateway, "submit", slow_submit)
    try:
        bid = round(run.mid() * 0.995, 2)  # under the touch: it rests
        slow = OrderIntent("slow", "binance", "BTC/USDT", "buy", "limit", 0.001, time.time_ns(), price=bid)
        await publish(redis, streams.ORDERS_INTENTS, slow)
        await asyncio.wait_for(entered.wait(), 10)

        halt = RiskControl("halt", time.time_ns(), reason="halt during a slow order", issued_by="test")
        sending = asyncio.create_task(send_control(settings, rurl, dsn, halt, wait_s=30.0))
        deadline = time.monotonic() + 10
        while not run.executor.guard.halted:  # the executor has the halt in force...
            assert time.monotonic() < deadline, "the executor never applied the halt"
            await asyncio.sleep(0.01)
        pending = await redis.xpending(streams.RISK_CONTROL, run.control_group)
        assert pending["pending"] == 1 and not sending.done()  # ...but has not confirmed it: an order is in flight
        release.set()
        sent = await asyncio.wait_for(sending, 30)
        order.append("confirmed")
        assert (sent["confirmed_by"], sent["not_confirmed"]) == ([run.control_group], [])
        assert order == ["placed", "confirmed"]
        await event(redis, "slow", "cancelled")  # and the halt cancelled it
    finally:
        release.set()
        run.executor.stop()
        await task
