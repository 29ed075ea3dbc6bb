"""The risk service follows only signed controls (shared.signing): an unsigned halt is dead-lettered
with a RiskEvent, a halt from `tradewind halt` (signed with the operator key) is followed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from services.risk import service as risk_service
from services.risk.cli import halt
from shared.bus import connect_redis
from shared.config import Settings
from shared.schemas import RiskControl, RiskEvent, decode, encode, streams
from tests.control import CLI_ENV, KEYS

pytestmark = pytest.mark.integration


async def until(what: str, probe: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := await probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
    return got


async def test_the_risk_service_refuses_an_unsigned_halt_and_follows_a_signed_one(isolated: tuple[str, str]) -> None:
    dsn, rurl = isolated
    redis: Redis = connect_redis(rurl)
    settings = Settings(
        redis_url=rurl,
        database_url=dsn,
        bus={"block_ms": 50, "claim_idle_ms": 1000, "claim_interval_ms": 200},
        risk={"heartbeat_s": 0.05, "market_data_venues": ["binance"], "stale_after_s": 60.0},
        control=KEYS,
    )
    group = f"{settings.risk.group}-control"

    async def state() -> dict[str, Any] | None:
        raw = await redis.get(streams.RISK_STATE)
        return json.loads(raw) if raw else None

    async def group_ready() -> bool:
        groups = await redis.xinfo_groups(streams.RISK_CONTROL) if await redis.exists(streams.RISK_CONTROL) else []
        return any(g["name"].decode() == group for g in groups)

    async def dead_letters() -> list[dict[bytes, bytes]]:
        return [f for _, f in await redis.xrange(streams.dead_letter(streams.RISK_CONTROL))]  # type: ignore[misc]

    async def refused() -> list[RiskEvent]:
        out = [m for _, f in await redis.xrange(streams.RISK_EVENTS) for m in decode(f[streams.FIELD.encode()])]  # type: ignore[index]
        return [m for m in out if isinstance(m, RiskEvent) and m.kind == "control_refused"]

    stopping = asyncio.Event()
    task = asyncio.create_task(risk_service.run(settings, stopping))
    try:
        await until("the risk service's state", state)
        await until("its control group", group_ready)
        forged = RiskControl("halt", time.time_ns(), reason="forged", issued_by="cli:ops@host", cause="human")
        entry = (await redis.xadd(streams.RISK_CONTROL, {streams.FIELD: encode(forged)})).decode()
        (record,) = await until("the dead letter", dead_letters)
        assert (record[b"id"].decode(), record[b"group"].decode(), record[b"error"]) == (
            entry,
            group,
            b"refused: unsigned",
        )
        (event,) = await until("the RiskEvent", refused)
        assert (event.detail["entry"], event.detail["refused_by"], event.severity) == (entry, "risk", "critical")
        assert (await state() or {})["halted"] == ""

        env = {"REDIS_URL": rurl, "DATABASE_URL": dsn, **CLI_ENV}
        result = await asyncio.to_thread(CliRunner().invoke, halt, ["--reason", "signed drill"], env=env)
        assert result.exit_code == 0, result.output

        async def halted() -> bool:
            return ((await state()) or {}).get("halted") == "signed drill"

        await until("the signed halt in the risk state", halted)
        assert len(await dead_letters()) == 1
    finally:
        stopping.set()
        await task
        await redis.aclose()
