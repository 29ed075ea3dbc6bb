"""The bus behaviour suite, against a real Redis 6.2 (embedded unless REDIS_URL is set)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.exceptions import AuthenticationError

from shared.bus import Consumer, Delivery, RedisBus, when_redis_answers
from shared.config import BusSettings
from shared.publisher import Publisher
from shared.schemas import Trade, decode, streams

pytestmark = pytest.mark.integration


def trade(i: int) -> Trade:
    return Trade("binance", "BTC/USDT", str(i), 100.0 + i, 0.5, "buy" if i % 2 else "sell", i, i + 1)


async def run_until(consumer: Consumer, done: asyncio.Event, timeout: float = 20.0) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 5)


async def test_publish_and_group_consume_acks_after_handler(redis, uid, bus_settings):
    bus = RedisBus(redis, bus_settings)
    stream = f"t:{uid}"
    await bus.publish(stream, trade(1))
    await bus.publish(stream, [trade(2), trade(3)])
    seen: list[Delivery] = []
    done = asyncio.Event()

    async def handle(batch: list[Delivery]) -> None:
        # While the handler runs, the entries are pending (not yet acked).
        info = await redis.xpending(stream, "g")
        assert info["pending"] >= len(batch)
        seen.extend(batch)
        if sum(len(d.messages) for d in seen) == 3:
            done.set()

    await run_until(Consumer(redis, [stream], "g", handle, bus_settings, name="c1"), done)
    assert [m.trade_id for d in seen for m in d.messages] == ["1", "2", "3"]
    assert [len(d.messages) for d in seen] == [1, 2]
    assert (await redis.xpending(stream, "g"))["pending"] == 0
    stats = await redis.hgetall(streams.stats_key(stream))
    assert int(stats[b"entries"]) == 2
    assert int(stats[b"msgs"]) == 3


async def test_publisher_batches_messages_into_entries_and_loses_none(redis, uid):
    settings = BusSettings(messages_per_entry=64)
    publisher = Publisher(RedisBus(redis, settings))
    publisher.start()
    stream = f"t:{uid}"
    for i in range(10_000):
        publisher.put_nowait(stream, trade(i))
        if i % 2500 == 0:
            await asyncio.sleep(0)  # let the writer drain part-way, as a live feed would
    await publisher.close()
    rows = await redis.xrange(stream)
    ids = [m.trade_id for _, fields in rows for m in decode(fields[b"d"])]
    assert ids == [str(i) for i in range(10_000)]
    assert all(len(decode(f[b"d"])) <= 64 for _, f in rows)
    assert len(rows) < 10_000 / 32  # batched, not one entry per message


async def test_failing_entry_is_retried_then_dead_lettered_without_holding_back_others(redis, uid, bus_settings):
    bus = RedisBus(redis, bus_settings)
    stream = f"t:{uid}"
    await bus.publish_many([(stream, trade(i)) for i in range(5)])
    attempts: dict[str, int] = {}
    done_ids: set[str] = set()
    finished = asyncio.Event()

    async def handle(batch: list[Delivery]) -> None:
        for d in batch:
            tid = d.messages[0].trade_id  # type: ignore[union-attr]
            attempts[tid] = attempts.get(tid, 0) + 1
            if tid == "3":
                raise ValueError("poison trade 3")
        done_ids.update(d.messages[0].trade_id for d in batch)  # type: ignore[union-attr]

    consumer = Consumer(redis, [stream], "g", handle, bus_settings, name="c1")
    task = asyncio.create_task(consumer.run())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not await redis.xlen(streams.dead_letter(stream)):
        await asyncio.sleep(0.05)
    consumer.stop()
    await task
    finished.set()
    assert done_ids == {"0", "1", "2", "4"}
    dlq = await redis.xrange(streams.dead_letter(stream))
    assert len(dlq) == 1
    fields = dlq[0][1]
    assert [m.trade_id for m in decode(fields[b"d"])] == ["3"]  # the original payload, intact
    assert b"poison trade 3" in fields[b"error"]
    assert fields[b"stream"].decode() == stream
    # first delivery + (max_deliveries - 1) redeliveries, then dead-lettered on the next claim
    assert attempts["3"] == bus_settings.max_deliveries + 1  # batch try + per-entry try, then retries
    assert (await redis.xpending(stream, "g"))["pending"] == 0


async def test_undecodable_entry_goes_to_dead_letter_and_consumer_survives(redis, uid, bus_settings):
    stream = f"t:{uid}"
    await redis.xadd(stream, {"d": b"\xc1 not msgpack"})
    await redis.xadd(stream, {"wrong_field": b"x"})
    await RedisBus(redis, bus_settings).publish(stream, trade(7))
    got: list[str] = []
    done = asyncio.Event()

    async def handle(batch: list[Delivery]) -> None:
        got.extend(m.trade_id for d in batch for m in d.messages)  # type: ignore[union-attr]
        done.set()

    await run_until(Consumer(redis, [stream], "g", handle, bus_settings, name="c1"), done)
    assert got == ["7"]
    dlq = await redis.xrange(streams.dead_letter(stream))
    assert len(dlq) == 2
    assert all(b"undecodable" in f[b"error"] for _, f in dlq)


async def test_entries_of_a_dead_consumer_are_reclaimed(redis, uid, bus_settings):
    stream = f"t:{uid}"
    await RedisBus(redis, bus_settings).publish_many([(stream, trade(i)) for i in range(3)])
    await redis.xgroup_create(stream, "g", id="0")
    # "dead" reads the entries and dies without acking.
    await redis.xreadgroup("g", "dead", {stream: ">"}, count=10)
    got: list[str] = []
    done = asyncio.Event()

    async def handle(batch: list[Delivery]) -> None:
        got.extend(m.trade_id for d in batch for m in d.messages)  # type: ignore[union-attr]
        if len(got) == 3:
            done.set()

    started = time.monotonic()
    await run_until(Consumer(redis, [stream], "g", handle, bus_settings, name="alive"), done)
    assert sorted(got) == ["0", "1", "2"]
    assert time.monotonic() - started >= bus_settings.claim_idle_ms / 1000 * 0.9  # not before they were idle
    pending = await redis.xpending(stream, "g")
    assert pending["pending"] == 0


async def test_restart_under_same_name_redelivers_own_pending_at_once(redis, uid, bus_settings):
    stream = f"t:{uid}"
    await RedisBus(redis, bus_settings).publish(stream, trade(1))
    await redis.xgroup_create(stream, "g", id="0")
    await redis.xreadgroup("g", "same", {stream: ">"}, count=10)
    settings = bus_settings.model_copy(update={"claim_idle_ms": 60_000})  # reclaim would not kick in
    done = asyncio.Event()

    async def handle(batch: list[Delivery]) -> None:
        done.set()

    await run_until(Consumer(redis, [stream], "g", handle, settings, name="same"), done, timeout=5)
    assert (await redis.xpending(stream, "g"))["pending"] == 0


async def test_trimming_keeps_the_stream_bounded(redis, uid):
    settings = BusSettings(maxlen=1_000)
    bus = RedisBus(redis, settings)
    stream = f"t:{uid}"
    for start in range(0, 20_000, 1_000):
        await bus.publish_many([(stream, trade(i)) for i in range(start, start + 1_000)])
    length = await redis.xlen(stream)
    assert 1_000 <= length < 1_000 + 200  # approximate trimming removes whole macro nodes
    last = await redis.xrevrange(stream, count=1)
    assert decode(last[0][1][b"d"])[0].trade_id == "19999"  # the newest are kept


async def test_stop_finishes_the_batch_in_flight(redis, uid, bus_settings):
    stream = f"t:{uid}"
    await RedisBus(redis, bus_settings).publish_many([(stream, trade(i)) for i in range(10)])
    entered, finished = asyncio.Event(), []

    async def slow(batch: list[Delivery]) -> None:
        entered.set()
        await asyncio.sleep(0.3)
        finished.extend(batch)

    consumer = Consumer(redis, [stream], "g", slow, bus_settings, name="c1")
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(entered.wait(), 5)
    consumer.stop()
    await asyncio.wait_for(task, 5)
    assert len(finished) == 10
    assert (await redis.xpending(stream, "g"))["pending"] == 0


def test_options_that_cannot_work_together_are_rejected(bus_settings):
    async def noop(batch: list[Delivery]) -> None:
        return None

    with pytest.raises(ValueError, match="at least one stream"):
        Consumer(None, [], "g", noop, bus_settings)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="group"):
        Consumer(None, ["s"], "", noop, bus_settings)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="claim_idle_ms"):
        Consumer(None, ["s"], "g", noop, BusSettings(block_ms=1000, claim_idle_ms=500))  # type: ignore[arg-type]


@pytest.mark.slow
async def test_100k_messages_survive_a_consumer_killed_mid_batch(redis, redis_url, uid):
    """SIGKILL one consumer process mid-run; a second one finishes: every message applied, none lost."""
    stream, sink = f"crash:{uid}", f"sink:{uid}"
    bus = RedisBus(redis, BusSettings(maxlen=10_000_000))
    total, per_entry = 100_000, 10
    for start in range(0, total, 5_000):
        await bus.publish_many(
            [(stream, [trade(i) for i in range(j, j + per_entry)]) for j in range(start, start + 5_000, per_entry)]
        )
    worker = Path(__file__).with_name("bus_worker.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}

    def spawn(name: str, pause: str, hold_after: int = 0) -> subprocess.Popen[bytes]:
        args = [sys.executable, str(worker), redis_url, stream, "g", name, sink, pause, str(hold_after)]
        return subprocess.Popen(args, env=env)

    first = spawn("first", "0.01", hold_after=30_000)  # from then on it holds its batch unacked
    deadline = time.monotonic() + 60
    while await redis.scard(sink) < 30_000:
        assert time.monotonic() < deadline, "first consumer made no progress"
        assert first.poll() is None, "first consumer died on its own"
        await asyncio.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = await redis.scard(sink)
    assert killed_at < total
    assert (await redis.xpending(stream, "g"))["pending"] > 0  # it died holding a batch

    second = spawn("second", "0")
    try:
        deadline = time.monotonic() + 90
        while (await redis.scard(sink)) < total or (await redis.xpending(stream, "g"))["pending"]:
            assert time.monotonic() < deadline, f"stuck at {await redis.scard(sink)} of {total}"
            await asyncio.sleep(0.05)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(10)
    members = await redis.smembers(sink)
    assert {int(m) for m in members} == set(range(total))
    attempts = int(await redis.get(f"{sink}:attempts"))
    assert attempts >= total  # at-least-once: the killed batch may have been applied twice...
    assert len(members) == total  # ...but the idempotent sink holds each effect once
    assert await redis.xlen(streams.dead_letter(stream)) == 0


async def test_long_gone_consumers_with_nothing_pending_are_forgotten(redis, uid, bus_settings):
    stream = f"t:{uid}"
    await RedisBus(redis, bus_settings).publish(stream, trade(1))
    await redis.xgroup_create(stream, "g", id="0")
    await redis.xreadgroup("g", "gone", {stream: ">"}, count=10)  # it read the entry...
    await redis.xreadgroup("g", "gone-clean", {stream: "0"}, count=10)  # ...this one holds nothing
    await asyncio.sleep(bus_settings.claim_idle_ms * 10 / 1000 + 0.1)
    done = asyncio.Event()

    async def handle(batch: list[Delivery]) -> None:
        done.set()

    await run_until(Consumer(redis, [stream], "g", handle, bus_settings, name="alive"), done)
    names = {row["name"].decode() for row in await redis.xinfo_consumers(stream, "g")}
    # "gone-clean" held nothing; "gone" held an entry, which was reclaimed first, then it was dropped too.
    assert names == {"alive"}
    assert (await redis.xpending(stream, "g"))["pending"] == 0


async def test_a_starting_service_does_not_wait_out_a_refused_password() -> None:
    """redis-py's AuthenticationError is a ConnectionError: it was retried like a Redis restart for
    ``bus.start_wait_s``, then reported as Redis not answering."""
    calls = []

    async def load() -> None:
        calls.append(1)
        raise AuthenticationError("invalid username-password pair")

    with pytest.raises(AuthenticationError):
        await when_redis_answers(load, "risk: load the halts", wait_s=30)
    assert calls == [1]
