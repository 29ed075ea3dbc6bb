"""The publisher rides out Redis refusing writes (NOPERM, OOM): nothing lost, nothing written twice,
an unencodable message dropped alone, and a clear count when the bound forces it to shed."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from shared.bus import Consumer, Delivery, RedisBus, connect_redis
from shared.config import BusSettings
from shared.embedded import EmbeddedRedis
from shared.metrics import ServiceMetrics
from shared.publisher import Publisher
from shared.schemas import Trade, decode, streams

pytestmark = pytest.mark.integration


def trade(i: int, ts: int | None = None) -> Trade:
    return Trade("binance", "BTC/USDT", str(i), 100.0 + i, 0.5, "buy", i if ts is None else ts, i)


async def until(condition: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def trade_ids(redis: Redis, stream: str) -> list[str]:
    return [m.trade_id for _, fields in await redis.xrange(stream) for m in decode(fields[b"d"])]  # type: ignore[union-attr]


def errors(metrics: ServiceMetrics, kind: str) -> float:
    return metrics.registry.get_sample_value("tradewind_errors_total", {"service": "t", "kind": kind}) or 0.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A server of the test's own: these tests set its maxmemory."""
    server = EmbeddedRedis(tmp_path / "redis")
    yield server.start()
    server.stop()


@pytest.fixture
async def admin(own_redis: str) -> AsyncIterator[Redis]:
    client = connect_redis(own_redis)
    yield client
    await client.config_set("maxmemory", 0)
    await client.aclose()


async def test_a_refused_stream_is_kept_and_sent_once_allowed_while_the_others_go_through(redis, redis_url, uid):
    """NOPERM on one stream of the batch: the allowed stream's entries go in once, the refused ones wait."""
    allowed, refused, user = f"t:{uid}:a", f"t:{uid}:b", f"u{uid}"
    await redis.execute_command(
        "ACL", "SETUSER", user, "on", ">pw", f"~{allowed}", f"~{streams.STATS_PREFIX}*", "+@all"
    )
    client = Redis.from_url(redis_url, username=user, password="pw")
    metrics = ServiceMetrics("t")
    publisher = Publisher(RedisBus(client, BusSettings(messages_per_entry=10), metrics))
    publisher.start()
    try:
        for i in range(50):
            publisher.put_nowait(allowed, trade(i))
            publisher.put_nowait(refused, trade(i))
        await until(lambda: publisher.failures >= 3, "three refused sends")
        assert await trade_ids(redis, allowed) == [str(i) for i in range(50)]
        assert publisher.buffered == 50  # the refused stream's batch is kept, not lost
        assert errors(metrics, "publish_retry") >= 3

        await redis.execute_command("ACL", "SETUSER", user, f"~{refused}")
        await asyncio.wait_for(publisher.flush(), 20)
        assert await trade_ids(redis, refused) == [str(i) for i in range(50)]
        assert await trade_ids(redis, allowed) == [str(i) for i in range(50)]  # never sent twice
        for stream in (allowed, refused):
            stats = await redis.hgetall(streams.stats_key(stream))
            assert int(stats[b"entries"]) == 5
            assert int(stats[b"msgs"]) == 50
    finally:
        await publisher.close()
        await client.aclose()
        await redis.execute_command("ACL", "DELUSER", user)


async def test_out_of_memory_holds_the_batch_until_it_clears_and_drops_only_the_unencodable(own_redis, admin):
    await admin.config_set("maxmemory-policy", "noeviction")
    await admin.config_set("maxmemory", 1)
    client = connect_redis(own_redis)
    publisher = Publisher(RedisBus(client, BusSettings(messages_per_entry=8)))
    writer = publisher.start()
    try:
        for i in range(40):
            publisher.put_nowait("s", trade(i, ts=2**70 if i == 13 else None))  # 13 cannot be encoded
        await until(lambda: publisher.failures >= 2, "two OOM refusals")
        assert not writer.done()  # the writer survives a non-connection error
        assert await admin.xlen("s") == 0
        assert publisher.unencodable == 1

        await admin.config_set("maxmemory", 0)
        await asyncio.wait_for(publisher.flush(), 20)
        assert await trade_ids(admin, "s") == [str(i) for i in range(40) if i != 13]
    finally:
        await publisher.close()
        await client.aclose()


async def test_past_its_bound_the_publisher_sheds_the_oldest_and_says_how_many(own_redis, admin, caplog):
    await admin.config_set("maxmemory-policy", "noeviction")
    await admin.config_set("maxmemory", 1)
    client = connect_redis(own_redis)
    metrics = ServiceMetrics("t")
    publisher = Publisher(RedisBus(client, BusSettings(messages_per_entry=10), metrics), max_buffered=30)
    publisher.start()
    try:
        with caplog.at_level(logging.ERROR, logger="shared.bus"):
            for i in range(100):  # put_nowait does not wait: a producer that outruns a failing Redis
                publisher.put_nowait("s", trade(i))
            await until(lambda: publisher.shed > 0, "shedding")
        assert publisher.shed == 70
        assert publisher.buffered == 30
        assert errors(metrics, "publish_shed") >= 1
        assert any("dropped the oldest 70 messages" in r.getMessage() for r in caplog.records)

        await admin.config_set("maxmemory", 0)
        await asyncio.wait_for(publisher.flush(), 20)
        assert await trade_ids(admin, "s") == [str(i) for i in range(70, 100)]  # the newest are kept
    finally:
        await publisher.close()
        await client.aclose()


async def test_the_consumer_remembers_a_bounded_number_of_handler_errors(redis, uid, bus_settings):
    stream = f"t:{uid}"
    await RedisBus(redis, bus_settings).publish_many([(stream, trade(i)) for i in range(20)])
    tried: set[str] = set()

    async def fail(batch: list[Delivery]) -> None:
        tried.update(d.entry_id for d in batch)
        raise RuntimeError("no")

    consumer = Consumer(redis, [stream], "g", fail, bus_settings, name=f"c{uuid.uuid4().hex[:4]}", errors_kept=5)
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: len(tried) == 20, "every entry tried")
        assert len(consumer._errors) == 5
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
