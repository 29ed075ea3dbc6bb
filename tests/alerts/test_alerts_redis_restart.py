"""The alerts service reads on through a Redis restart: what came after the restart is alerted, nothing
before it twice. It used to end its follow task (the service exited and started again from the streams'
ends, so whatever was published meanwhile was never alerted)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, cast

import pytest

from services.alerts.service import FOLLOWED, Watcher, follow, stream_ends
from shared.bus import connect_redis
from shared.embedded import EmbeddedRedis
from shared.schemas import RiskEvent, encode, streams

pytestmark = pytest.mark.integration


class Seen:
    """Stands in for the watcher: what ``follow`` handed over, in order."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def on_message(self, message: Any) -> None:
        self.messages.append(message)


def event(reason: str) -> RiskEvent:
    return RiskEvent("halt", time.time_ns(), "critical", None, None, {"reason": reason})  # type: ignore[arg-type]


async def test_following_survives_a_redis_kill_and_reads_on_after_the_last_entry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services.alerts.service")
    server = EmbeddedRedis(tmp_path / "redis")  # append-only file: the streams survive a kill -9
    redis = connect_redis(server.start())
    seen = Seen()
    await redis.xadd(streams.RISK_EVENTS, {streams.FIELD: encode(event("before the start"))})
    ids = await stream_ends(redis, FOLLOWED)
    task = asyncio.create_task(follow(redis, cast(Watcher, seen), ids, block_ms=50))
    try:
        await redis.xadd(streams.RISK_EVENTS, {streams.FIELD: encode(event("first"))})
        await until(lambda: len(seen.messages) == 1, task)
        assert server.process is not None
        server.process.kill()  # kill -9
        server.process.wait()
        await until(lambda: any("alerts: lost Redis" in r.getMessage() for r in caplog.records), task)
        await asyncio.to_thread(server.start)  # same port, same append-only file
        await redis.xadd(streams.RISK_EVENTS, {streams.FIELD: encode(event("after the restart"))})
        await until(lambda: len(seen.messages) >= 2, task)
        assert [m.detail["reason"] for m in seen.messages] == ["first", "after the restart"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await redis.aclose()
        server.stop()


async def until(condition: Any, task: asyncio.Task[Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert not task.done(), f"follow ended: {task.exception()!r}"
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)
