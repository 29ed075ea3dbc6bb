"""Kill switch and heartbeat through real Redis and PostgreSQL: what an executor sees on risk:control."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from services.risk import service as risk_service
from services.risk.cli import halt, resume
from shared import pretrade
from shared.bus import Consumer, Delivery
from shared.config import BusSettings, Settings
from shared.pretrade import PreTradeGuard
from shared.schemas import OrderEvent, OrderIntent, RiskControl, Status, encode, streams
from shared.sections.risk import RiskSettings
from shared.signing import RISK
from shared.storage import Database
from tests.control import CLI_ENV, KEYS, SIGNERS

pytestmark = pytest.mark.integration


def intent(uid: str) -> OrderIntent:
    return OrderIntent(f"o-{uid}", f"v{uid}", "BTC/USDT", "buy", "limit", 0.1, 0, price=100.0)


def armed_guard(risk: RiskSettings, uid: str) -> PreTradeGuard:
    guard = PreTradeGuard(risk, now_ns=time.time_ns())
    guard.set_mid(f"v{uid}", "BTC/USDT", 100.0)
    guard.set_free(f"v{uid}", "USDT", 1e6)
    guard.on_order_event(OrderEvent(f"rest-{uid}", f"v{uid}", "BTC/USDT", "buy", "accepted", 0))
    return guard


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_halt_rejects_within_one_loop_turn_cancels_and_resume_restores(
    redis_url: str, database_url: str, db: Database, redis: Redis, uid: str, bus_settings: BusSettings
) -> None:
    guard = armed_guard(RiskSettings(), uid)
    assert guard.check(intent(uid), time.time_ns()) is None
    seen: list[tuple[str, str | None, list[OrderIntent]]] = []

    async def executor_handler(batch: list[Delivery]) -> None:
        for delivery in batch:
            for msg in delivery.messages:
                if isinstance(msg, RiskControl) and msg.reason.endswith(uid):
                    cancels = guard.on_control(msg, time.time_ns())
                    seen.append((msg.action, guard.check(intent(uid), time.time_ns()), cancels))  # same turn

    consumer = Consumer(redis, [streams.RISK_CONTROL], f"exec-{uid}", executor_handler, bus_settings, start_id="$")
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(consumer.ready.wait(), 10)  # the group exists before anything is published
        env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url, **CLI_ENV}
        result = await asyncio.to_thread(CliRunner().invoke, halt, ["--reason", f"drill {uid}"], env=env)
        assert result.exit_code == 0, result.output
        assert f"exec-{uid}" in json.loads(result.stdout)["confirmed_by"]  # it returned once the group handled it
        assert len(seen) == 1
        action, reason, cancels = seen[0]
        assert (action, reason) == ("halt", pretrade.HALTED)
        assert [(c.client_order_id, c.cancel) for c in cancels] == [(f"rest-{uid}", True)]
        result = await asyncio.to_thread(CliRunner().invoke, resume, ["--reason", f"over {uid}"], env=env)
        assert result.exit_code == 0, result.output
        await until(lambda: len(seen) == 2)
        assert seen[1][:2] == ("resume", None)
    finally:
        consumer.stop()
        await task
    rows = await db.fetch(
        "SELECT kind, severity FROM risk_events WHERE detail->>'reason' IN ($1, $2) ORDER BY ts",
        f"drill {uid}",
        f"over {uid}",
    )
    assert [(r["kind"], r["severity"]) for r in rows] == [("halt", "critical"), ("resume", "info")]


async def test_halt_names_the_groups_that_refused_it_or_did_not_confirm_it_in_time(
    redis_url: str, database_url: str, redis: Redis, uid: str, bus_settings: BusSettings
) -> None:
    """A group whose consumer took an entry and never acknowledged it (a stalled service), and one that
    refuses the operator's controls (a service with another operator key: dead-lettered, so acknowledged
    but not in force): `tradewind halt` still records the halt, then says so, in its JSON and in words."""
    stalled, refusing = f"stalled-{uid}", f"refusing-{uid}"
    env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url, **CLI_ENV}
    await redis.xgroup_create(streams.RISK_CONTROL, stalled, id="$", mkstream=True)

    async def refuse(delivery: Delivery) -> str | None:
        return "signature does not verify (test: another operator key)"

    async def never(batch: list[Delivery]) -> None:
        raise AssertionError("a refused control reached the handler")

    consumer = Consumer(redis, [streams.RISK_CONTROL], refusing, never, bus_settings, start_id="$", verify=refuse)
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(consumer.ready.wait(), 10)
        await redis.xadd(streams.RISK_CONTROL, {streams.FIELD: encode(SIGNERS[RISK].sign(RiskControl("heartbeat", 1)))})
        assert await redis.xreadgroup(stalled, "stuck", {streams.RISK_CONTROL: ">"}, count=1)  # taken, never acked
        args = ["--reason", f"stalled {uid}", "--exchange", f"v{uid}", "--wait-s", "1"]
        result = await asyncio.to_thread(CliRunner().invoke, halt, args, env=env)
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert stalled in out["not_confirmed"] and stalled not in out["confirmed_by"]
        assert "signature does not verify" in out["refused_by"][refusing]
        assert refusing not in out["confirmed_by"] + out["not_confirmed"]
        assert f"v{uid}" in {h["exchange"] for h in out["halts"]}  # recorded all the same: the set is durable
        assert f"not confirmed within 1s by consumer group {stalled} of risk:control" in result.stderr
        assert f"REFUSED by consumer group {refusing} of risk:control" in result.stderr
    finally:
        consumer.stop()
        await task
        for group in (stalled, refusing):
            await redis.xgroup_destroy(streams.RISK_CONTROL, group)
        args = ["--reason", f"stalled {uid} over", "--exchange", f"v{uid}", "--wait-s", "0"]
        resumed = await asyncio.to_thread(CliRunner().invoke, resume, args, env=env)
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["confirmed_by"] == []  # --wait-s 0: not checked


async def test_executor_halts_when_risk_goes_silent(
    redis_url: str, database_url: str, db: Database, redis: Redis, uid: str, bus_settings: BusSettings
) -> None:
    risk = RiskSettings(heartbeat_s=0.05, heartbeat_timeout_s=0.4, group=f"risk-{uid}", market_data_venues=[f"v{uid}"])
    settings = Settings(redis_url=redis_url, database_url=database_url, bus=bus_settings, risk=risk, control=KEYS)
    guard = armed_guard(risk, uid)
    controls: list[RiskControl] = []
    last_beat = [0]  # when the executor applied the risk service's last heartbeat

    async def executor_handler(batch: list[Delivery]) -> None:
        for delivery in batch:
            for msg in delivery.messages:
                if isinstance(msg, RiskControl):
                    now = time.time_ns()
                    guard.on_control(msg, now)
                    controls.append(msg)
                    if msg.action == "heartbeat":
                        last_beat[0] = now

    consumer = Consumer(redis, [streams.RISK_CONTROL], f"exec-{uid}", executor_handler, bus_settings, start_id="$")
    consumer_task = asyncio.create_task(consumer.run())
    stopping = asyncio.Event()
    service_task: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(consumer.ready.wait(), 10)
        service_task = asyncio.create_task(risk_service.run(settings, stopping))
        await until(lambda: sum(c.action == "heartbeat" for c in controls) >= 3)
        await asyncio.sleep(0.5)  # longer than the timeout: heartbeats keep the guard open
        assert guard.check(intent(uid), time.time_ns()) is None
        # A feed gap on the venue halts it through risk:control and is recorded.
        gap = Status(f"v{uid}", "gap", time.time_ns(), "BTC/USDT", "seq jump")
        await redis.xadd(streams.MD_STATUS, {streams.FIELD: encode(gap)})
        await until(lambda: any(c.action == "halt" and c.exchange == f"v{uid}" for c in controls))
        assert guard.check(intent(uid), time.time_ns()) == pretrade.VENUE_HALTED
        await until_state_shows(redis, f"v{uid}")
        stopping.set()  # the risk service dies
        await service_task
        # judged from the last heartbeat, not from when the service finished stopping (slow under load)
        await guard_waits_out(guard, uid, last_beat[0] + 1, risk.heartbeat_timeout_s)
    finally:
        stopping.set()
        if service_task is not None:
            await service_task
        consumer.stop()
        await consumer_task
    rows = await db.fetch("SELECT kind FROM risk_events WHERE exchange = $1", f"v{uid}")
    assert [r["kind"] for r in rows] == ["halt"]


async def until_state_shows(redis: Redis, venue: str) -> None:
    """The state the service publishes for `tradewind status` names the halted venue."""
    deadline = time.monotonic() + 5
    while True:
        raw = await redis.get(streams.RISK_STATE)
        if raw and json.loads(raw)["venues"].get(venue, {}).get("halted") == "feed gap":
            return
        assert time.monotonic() < deadline, f"risk state never showed {venue} halted: {raw!r}"
        await asyncio.sleep(0.02)


async def guard_waits_out(guard: PreTradeGuard, uid: str, since: int, timeout_s: float) -> None:
    """Still open before the timeout (last limits enforced), halted once it has passed."""
    feed_back = RiskControl("resume", since, exchange=f"v{uid}", issued_by="risk", cause="feed")
    guard.on_control(feed_back, since)  # isolate the heartbeat rule
    assert guard.check(intent(uid), since) is None
    await asyncio.sleep(timeout_s + 0.1)
    assert guard.check(intent(uid), time.time_ns()) == pretrade.HEARTBEAT_LOST


async def test_resume_lifts_a_drawdown_halt_only_with_force_and_a_reason(isolated: tuple[str, str]) -> None:
    from shared import halts
    from shared.bus import connect_redis

    dsn, rurl = isolated
    redis = connect_redis(rurl)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    env = {"REDIS_URL": rurl, "DATABASE_URL": dsn, **CLI_ENV}
    drawdown = RiskControl("halt", time.time_ns(), reason="total drawdown", issued_by="risk", cause="drawdown")
    try:
        await halts.send(redis, [drawdown], signer=SIGNERS[RISK], maxlen=1000, db=db)
        cli = CliRunner()
        plain = await asyncio.to_thread(cli.invoke, resume, [], env=env)
        assert plain.exit_code == 0 and "still halted: drawdown:* (total drawdown); needs --force" in plain.output
        assert [h["id"] for h in json.loads(plain.stdout.splitlines()[0])["halts"]] == ["drawdown:*"]
        no_reason = await asyncio.to_thread(cli.invoke, resume, ["--force"], env=env)
        assert no_reason.exit_code == 2 and "--force needs --reason" in no_reason.output
        forced = await asyncio.to_thread(cli.invoke, resume, ["--force", "--reason", "loss accepted"], env=env)
        assert forced.exit_code == 0 and json.loads(forced.stdout)["halts"] == []
        rows = await db.fetch("SELECT detail FROM risk_events WHERE kind = 'resume' ORDER BY ts")
        recorded = [json.loads(r["detail"]) for r in rows]
        assert [(d["force"], d["reason"]) for d in recorded] == [(False, "manual resume"), (True, "loss accepted")]
    finally:
        await db.close()
        await redis.aclose()
