"""Only the operator and the risk service steer a running executor (shared.signing): anyone else's
control on risk:control is dead-lettered with a RiskEvent, and risk may only tighten limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from services.executor.gateway import PaperGateway
from services.executor.service import Executor
from services.risk.cli import send_control
from shared.bus import connect_redis
from shared.config import Settings
from shared.paper import PaperExchange
from shared.schemas import RiskControl, RiskEvent, decode, encode, streams
from shared.signing import OPERATOR, RISK, Signer
from shared.storage import Database
from tests.control import KEYS, xadd

pytestmark = pytest.mark.integration
DLQ = streams.dead_letter(streams.RISK_CONTROL)


async def until(what: str, probe: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := await probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
    return got


async def refusals(redis: Redis) -> dict[str, str]:
    """entry id on risk:control -> the reason given in its dead-letter record."""
    return {f[b"id"].decode(): f[b"error"].decode() for _, f in await redis.xrange(DLQ)}  # type: ignore[union-attr]


async def refused_events(redis: Redis) -> list[RiskEvent]:
    out = []
    for _, fields in await redis.xrange(streams.RISK_EVENTS):  # type: ignore[union-attr]
        out += [m for m in decode(fields[streams.FIELD.encode()]) if isinstance(m, RiskEvent)]  # type: ignore[index]
    return [e for e in out if e.kind == "control_refused"]


async def acked(redis: Redis, group: str, entry: bytes) -> bool:
    for g in await redis.xinfo_groups(streams.RISK_CONTROL):
        if g["name"].decode() == group:
            last = g["last-delivered-id"].decode().split("-")
            return [int(x) for x in last] >= [int(x) for x in entry.decode().split("-")] and g["pending"] == 0
    return False


@pytest.fixture
async def executor(isolated: tuple[str, str]) -> AsyncIterator[tuple[Executor, Redis, str, str, str]]:
    dsn, rurl = isolated
    redis = connect_redis(rurl)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    settings = Settings(
        mode="replay",
        bus={"block_ms": 50, "claim_idle_ms": 1000, "claim_interval_ms": 200},
        executor={"strategy_enabled": False, "rl_enabled": False, "market_data_venues": ["binance"]},
        risk={"heartbeat_timeout_s": 0.5},
        control=KEYS,
    )
    run = Executor(settings, redis, db, PaperGateway(PaperExchange(settings.executor.venues, seed=1)), run_id="sig")
    task = asyncio.create_task(run.run())
    try:
        await asyncio.wait_for(run.ready.wait(), 20)
        yield run, redis, dsn, rurl, f"{settings.executor.group}-control"
    finally:
        run.stop()
        await task
        await db.close()
        await redis.aclose()


async def test_an_unsigned_halt_is_refused_and_a_signed_one_from_the_cli_halts(executor: Any) -> None:
    run, redis, dsn, rurl, _ = executor
    forged = RiskControl("halt", time.time_ns(), reason="forged", issued_by="cli:ops@host", cause="human")
    entry = (await redis.xadd(streams.RISK_CONTROL, {streams.FIELD: encode(forged)})).decode()
    reason = (await until("the dead letter", lambda: refusals(redis)))[entry]
    assert reason == "refused: unsigned"
    events = await until("the RiskEvent", lambda: refused_events(redis))
    assert [(e.detail["entry"], e.detail["reason"], e.detail["refused_by"]) for e in events] == [
        (entry, "unsigned", "executor")
    ]
    assert run.guard.halted == ""  # still trading

    settings = Settings(control=KEYS)
    await send_control(settings, rurl, dsn, forged)  # what `tradewind halt` does: signed as the operator
    await until("the signed halt", lambda: _true(run.guard.halted == "forged"))
    assert list(await refusals(redis)) == [entry]


async def test_risk_may_lower_a_limit_but_only_the_operator_may_raise_it(executor: Any) -> None:
    run, redis, _, _, group = executor

    def limit() -> float:
        return float(run.guard.limits("binance", "BTC/USDT").max_order_notional)

    def set_limit(value: float) -> RiskControl:
        return RiskControl("set_limit", time.time_ns(), exchange="binance", limits={"max_order_notional": value})

    raised = (await xadd(redis, set_limit(1e15), RISK)).decode()
    reasons = await until("the refused raise", lambda: refusals(redis))
    assert "would loosen max_order_notional" in reasons[raised]
    assert limit() == 25_000.0
    lowered = await xadd(redis, set_limit(1_000.0), RISK)
    await until("the lowered limit", lambda: acked(redis, group, lowered))
    assert limit() == 1_000.0
    operator = await xadd(redis, set_limit(50_000.0), OPERATOR)
    await until("the operator's raise", lambda: acked(redis, group, operator))
    assert limit() == 50_000.0
    assert list(await refusals(redis)) == [raised]


async def test_a_forged_heartbeat_does_not_keep_the_executor_trading_when_risk_is_dead(executor: Any) -> None:
    run, redis, _, _, group = executor
    alive = await xadd(redis, RiskControl("heartbeat", time.time_ns(), issued_by="risk"), RISK)
    await until("the risk heartbeat", lambda: acked(redis, group, alive))
    assert run.guard.last_heartbeat_ns is not None  # armed: from now on silence halts
    await until("the heartbeat timeout", lambda: _true(run.guard.heartbeat_lost(time.time_ns())))
    forged = RiskControl("heartbeat", time.time_ns(), issued_by="risk")
    for fake in (forged, Signer(RISK, b"guessed").sign(forged)):
        await redis.xadd(streams.RISK_CONTROL, {streams.FIELD: encode(fake)})
    reasons = await until("both forgeries refused", lambda: _len(refusals(redis), 2))
    assert sorted(reasons.values()) == ["refused: bad signature (signer risk)", "refused: unsigned"]
    assert run.guard.heartbeat_lost(time.time_ns())  # still halted: risk.heartbeat_lost


async def _true(value: bool) -> bool:
    return value


async def _len(refused: Awaitable[dict[str, str]], n: int) -> dict[str, str] | None:
    got = await refused
    return got if len(got) >= n else None
