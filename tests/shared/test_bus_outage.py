"""The bus rides out a Redis restart: the publisher keeps its buffer, the consumer reconnects."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shared.bus import Consumer, Delivery, RedisBus, connect_redis
from shared.config import BusSettings
from shared.embedded import EmbeddedRedis
from shared.publisher import Publisher
from shared.schemas import Trade

pytestmark = pytest.mark.integration


async def test_publisher_and_consumer_survive_a_redis_restart(tmp_path: Path):
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    settings = BusSettings(block_ms=50, claim_idle_ms=300, claim_interval_ms=100, messages_per_entry=10)
    redis = connect_redis(url)
    publisher = Publisher(RedisBus(redis, settings))
    publisher.start()
    got: list[str] = []

    async def handle(batch: list[Delivery]) -> None:
        got.extend(m.trade_id for d in batch for m in d.messages)  # type: ignore[union-attr]

    consumer = Consumer(connect_redis(url), ["s"], "g", handle, settings, name="c")
    task = asyncio.create_task(consumer.run())
    try:
        for i in range(5):
            publisher.put_nowait("s", Trade("x", "A/B", str(i), 1.0, 1.0, "buy", i, i))
        await publisher.flush()
        deadline = time.monotonic() + 10
        while len(got) < 5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)

        server.stop()  # Redis goes away (no persistence: its data is gone too)
        for i in range(5, 25):  # published while Redis is down: kept in the buffer
            publisher.put_nowait("s", Trade("x", "A/B", str(i), 1.0, 1.0, "buy", i, i))
        await asyncio.sleep(0.5)
        server.start()  # same port

        await asyncio.wait_for(publisher.flush(), 20)
        deadline = time.monotonic() + 20
        while len(got) < 25:
            assert time.monotonic() < deadline, f"consumer stuck with {len(got)}"
            await asyncio.sleep(0.05)
        assert sorted(int(t) for t in got) == list(range(25))
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
        await publisher.close()
        server.stop()
