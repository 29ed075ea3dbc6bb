"""The Redis stream bus: batched publishing, consumer groups, reclaim, dead letters.

A thin layer over redis-py asyncio (hiredis parser). Delivery is at-least-once: a consumer
acks an entry only after its handler returned, so handlers must be idempotent. Entries left
pending by a dead consumer are reclaimed with XAUTOCLAIM; an entry delivered more than
``max_deliveries`` times, or one that cannot be decoded, moves to ``dlq:{<stream>}``.
Only Redis 6.2 stream commands are used (the embedded server is 6.2). On a Redis Cluster
(``bus.cluster``) every multi-key command stays within one hash slot: a stream's dead letters and
counters carry its name as a hash tag, and a consumer reads its streams with one XREADGROUP per slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import AuthenticationError, AuthorizationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.bounded import LruDict
from shared.config import BusSettings
from shared.metrics import ServiceMetrics
from shared.schemas import AnyMessage, DecodeError, decode, encode, streams

log = logging.getLogger(__name__)

Payload = AnyMessage | Sequence[AnyMessage]
TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
ERRORS_KEPT = 10_000  # handler errors remembered per consumer, for dead-letter records
T = TypeVar("T")


class RedisUnavailable(RuntimeError):
    """Redis did not answer a starting service within ``bus.start_wait_s``."""


def connect_redis(url: str, timeout_s: float | None = None, *, cluster: bool = False) -> Redis:
    """Open a client for the bus (bytes responses; hiredis parses when installed).

    ``timeout_s`` bounds connecting and every command (CLI commands: a server that does not answer
    is an error, not a hang); services leave it None, their blocking reads wait by design.
    ``cluster`` (``bus.cluster``): ``url`` names any node of a Redis Cluster; the cluster client finds
    the others and routes each command to its slot's node. It is typed ``Redis`` because it answers
    the same commands; what differs on a cluster (one slot per multi-key command) is handled here.
    """
    if cluster:
        client = RedisCluster.from_url(
            url, decode_responses=False, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        return cast(Redis, client)
    return Redis.from_url(
        url,
        decode_responses=False,
        health_check_interval=30,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
    )


async def when_redis_answers(operation: Callable[[], Awaitable[T]], what: str, wait_s: float) -> T:
    """Run a start-up step that needs Redis, again with backoff while Redis is down, for up to ``wait_s``.

    Redis restarting or failing over just as a service starts is no reason for the service to die: its
    consumers ride out the same outage later. Only for steps that may run twice (reads, harmless writes)."""
    deadline = time.monotonic() + wait_s
    backoff = 0.1
    while True:
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), backoff)):  # a server that never answers
                return await operation()
        except (AuthenticationError, AuthorizationError):  # redis-py's are ConnectionErrors: no wait mends them
            raise
        except (*TRANSIENT, TimeoutError) as exc:
            if time.monotonic() + backoff > deadline:
                raise RedisUnavailable(f"{what}: Redis did not answer for {wait_s:.0f}s ({exc})") from exc
            log.warning("%s: lost Redis (%s); retrying in %.1fs", what, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def is_cluster(redis: Redis) -> bool:
    return isinstance(redis, RedisCluster)


def by_slot(names: Sequence[str], cluster: bool) -> list[list[str]]:
    """``names`` grouped so that each group may go in one multi-key command: all together on a
    single server, one group per hash slot on a cluster (in first-seen order)."""
    if not cluster:
        return [list(names)]
    groups: dict[int, list[str]] = {}
    for name in names:
        groups.setdefault(key_slot(name.encode()), []).append(name)
    return list(groups.values())


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Bus(Protocol):
    """What a producer needs of the bus; type a parameter with it when publishing is all it does.

    ``RedisBus`` is the implementation; tests may pass anything with these two methods.
    """

    async def publish(self, stream: str, payload: Payload) -> str: ...

    async def publish_many(self, entries: Sequence[tuple[str, Payload]]) -> list[str]: ...


class RedisBus:
    """Publish to streams with approximate MAXLEN trimming and per-stream write counters."""

    def __init__(self, redis: Redis, settings: BusSettings, metrics: ServiceMetrics | None = None) -> None:
        self.redis = redis
        self.settings = settings
        self.metrics = metrics

    async def publish(self, stream: str, payload: Payload) -> str:
        """Append one entry (one message or a batch of messages); return its id."""
        return (await self.publish_many([(stream, payload)]))[0]

    async def publish_many(self, entries: Sequence[tuple[str, Payload]]) -> list[str]:
        """Append many entries in one pipelined round trip; return their ids in order."""
        return await self.publish_encoded([(s, encode(p), _count(p)) for s, p in entries])

    async def publish_encoded(self, entries: Sequence[tuple[str, bytes, int]]) -> list[str]:
        """Append already-encoded entries ``(stream, data, n_messages)`` in one round trip."""
        results = await self.send_encoded(entries)
        for r in results:
            if isinstance(r, Exception):
                raise r
        return [r for r in results if isinstance(r, str)]

    async def send_encoded(self, entries: Sequence[tuple[str, bytes, int]]) -> list[str | RedisError]:
        """Like ``publish_encoded``, but say per entry whether it went in: its id, or the error Redis gave.

        One round trip either way. An entry Redis refused (OOM, READONLY, NOPERM) is not counted in
        the stream's stats, so a caller can send it again without counting it twice. A lost
        connection still raises: then nobody knows which entries went in.
        """
        pipe = self.redis.pipeline(transaction=False)
        totals: dict[str, list[int]] = {}
        for stream, data, n in entries:
            pipe.xadd(stream, {streams.FIELD: data}, maxlen=self.settings.maxlen, approximate=True)
            t = totals.setdefault(stream, [0, 0])
            t[0] += 1
            t[1] += n
        for stream, (n_entries, n_msgs) in totals.items():
            pipe.hincrby(streams.stats_key(stream), "entries", n_entries)
            pipe.hincrby(streams.stats_key(stream), "msgs", n_msgs)
        results = await pipe.execute(raise_on_error=False)
        added: list[str | RedisError] = [r if isinstance(r, RedisError) else as_str(r) for r in results[: len(entries)]]
        refused: dict[str, list[int]] = {}
        for (stream, _, n), r in zip(entries, added, strict=True):
            if isinstance(r, RedisError):
                t = refused.setdefault(stream, [0, 0])
                t[0] += 1
                t[1] += n
        counted = {s: not isinstance(results[len(entries) + 2 * i], RedisError) for i, s in enumerate(totals)}
        if any(counted[s] for s in refused):  # rare: take back the stats of entries that did not go in
            with contextlib.suppress(RedisError, *TRANSIENT):
                pipe = self.redis.pipeline(transaction=False)
                for stream, (n_entries, n_msgs) in refused.items():
                    if counted[stream]:
                        pipe.hincrby(streams.stats_key(stream), "entries", -n_entries)
                        pipe.hincrby(streams.stats_key(stream), "msgs", -n_msgs)
                await pipe.execute(raise_on_error=False)
        if self.metrics:
            for stream, (_, n_msgs) in totals.items():
                sent = n_msgs - refused.get(stream, [0, 0])[1]
                if sent:
                    self.metrics.count_out(stream, sent)
        return added


def _count(payload: Payload) -> int:
    return 1 if not isinstance(payload, Sequence) else len(payload)


def as_str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream entry handed to a handler."""

    stream: str
    entry_id: str
    messages: list[AnyMessage]


Handler = Callable[[list[Delivery]], Awaitable[None]]
# Says why an entry must be refused (None: hand it over): it is dead-lettered at once, never retried.
Verify = Callable[[Delivery], Awaitable[str | None]]


class Consumer:
    """Read streams through a consumer group in batches; ack only after the handler returns.

    A failing batch is retried entry by entry so one poison entry does not hold back the
    others; an entry that keeps failing stays pending, is reclaimed after ``claim_idle_ms``
    and is dead-lettered once delivered more than ``max_deliveries`` times.
    """

    def __init__(
        self,
        redis: Redis,
        streams_: Sequence[str],
        group: str,
        handler: Handler,
        settings: BusSettings,
        *,
        name: str | None = None,
        start_id: str = "0",
        metrics: ServiceMetrics | None = None,
        verify: Verify | None = None,
        errors_kept: int = ERRORS_KEPT,
    ) -> None:
        if not streams_:
            raise ValueError("Consumer needs at least one stream to read")
        if not group:
            raise ValueError("Consumer needs a group name: groups are what make delivery at-least-once")
        if settings.claim_idle_ms <= settings.block_ms:
            raise ValueError(
                f"bus.claim_idle_ms ({settings.claim_idle_ms}) must exceed bus.block_ms ({settings.block_ms}):"
                " otherwise a live consumer's entries can be reclaimed while it is still working on them"
            )
        self.redis = redis
        self.streams = list(streams_)
        self.group = group
        self.handler = handler
        self.settings = settings
        self.name = name or default_consumer_name()
        self.start_id = start_id
        self.metrics = metrics
        self.verify = verify
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()  # set once the group exists: entries added after this are delivered
        # entry id -> last handler error, for the dead-letter record; bounded: an entry another consumer
        # took over, or one trimmed while pending, is never popped here
        self._errors: LruDict[str, str] = LruDict(errors_kept)
        self.processed = 0
        self.dead_lettered = 0

    def stop(self) -> None:
        """Ask the consumer to stop after the batch in flight (that batch is finished and acked)."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until ``stop()``; survive Redis restarts by retrying with backoff."""
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                await self._ensure_groups()
                self.ready.set()
                await self._recover_own_pending()
                backoff = 0.1
                await self._consume()
            except TRANSIENT as exc:
                log.warning("consumer %s/%s lost Redis (%s); retrying in %.1fs", self.group, self.name, exc, backoff)
                if self.metrics:
                    self.metrics.reconnect("redis")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 5.0)

    async def _consume(self) -> None:
        """Read new entries until stopped: one blocking XREADGROUP per slot group, all in flight at once
        (each on its own connection), their batches handled one at a time as they arrive."""
        groups = by_slot(self.streams, is_cluster(self.redis))
        reads: dict[asyncio.Task[Any], int] = {}  # read in flight -> its group
        next_claim = 0.0
        try:
            while not self._stopping.is_set():
                if time.monotonic() >= next_claim:
                    await self._reclaim()
                    next_claim = time.monotonic() + self.settings.claim_interval_ms / 1000
                for i in set(range(len(groups))) - set(reads.values()):
                    reads[asyncio.create_task(self._read(groups[i]), name=f"xreadgroup-{self.group}")] = i
                await self._process_reads(reads)
            while reads:  # stopping: reads in flight end within block_ms; what they delivered is handled too
                await self._process_reads(reads)
        finally:  # a lost connection or a cancel: entries a cancelled read got stay pending, recovered on restart
            for task in reads:
                task.cancel()
            await asyncio.gather(*reads, return_exceptions=True)

    async def _read(self, streams_: list[str]) -> Any:
        return await self.redis.xreadgroup(
            self.group,
            self.name,
            dict.fromkeys(streams_, ">"),
            count=self.settings.batch_size,
            block=self.settings.block_ms,
        )

    async def _process_reads(self, reads: dict[asyncio.Task[Any], int]) -> None:
        done, _ = await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            del reads[task]
            response = task.result()
            if response:
                await self._process(_entries(response))

    async def _ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id=self.start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _recover_own_pending(self) -> None:
        """Re-deliver entries this consumer name read but never acked (a restart under the same name)."""
        for group in by_slot(self.streams, is_cluster(self.redis)):
            await self._recover_pending_of(group)

    async def _recover_pending_of(self, streams_: list[str]) -> None:
        cursors: dict[Any, Any] = dict.fromkeys(streams_, "0")
        while cursors and not self._stopping.is_set():
            response = await self.redis.xreadgroup(self.group, self.name, cursors, count=self.settings.batch_size)
            entries = _entries(response)
            for stream in list(cursors):
                own = [e for e in entries if e[0] == stream]
                if not own:
                    del cursors[stream]
                else:
                    cursors[stream] = own[-1][1]
            if entries:
                await self._triage(entries)

    async def _reclaim(self) -> None:
        """Take over entries idle longer than ``claim_idle_ms`` in any consumer of the group."""
        for stream in self.streams:
            cursor = "0-0"
            while not self._stopping.is_set():
                result = await self.redis.xautoclaim(
                    stream,
                    self.group,
                    self.name,
                    min_idle_time=self.settings.claim_idle_ms,
                    start_id=cursor,
                    count=self.settings.batch_size,
                )
                cursor = as_str(result[0])
                claimed = [(stream, as_str(eid), fields) for eid, fields in result[1]]
                if claimed:
                    log.info("consumer %s reclaimed %d entries of %s", self.name, len(claimed), stream)
                    await self._triage(claimed)
                if cursor == "0-0":
                    break
            await self._forget_dead_consumers(stream)

    async def _forget_dead_consumers(self, stream: str) -> None:
        """Drop consumers long gone with nothing pending, so restarts don't pile up names in the group.

        Safe even if one is alive after all: XREADGROUP recreates a consumer, and with nothing
        pending nothing is lost.
        """
        idle_limit = self.settings.claim_idle_ms * 10
        for row in await self.redis.xinfo_consumers(stream, self.group):
            name = as_str(row["name"])
            if name != self.name and int(row["pending"]) == 0 and int(row["idle"]) > idle_limit:
                await self.redis.xgroup_delconsumer(stream, self.group, name)
                log.info("consumer %s removed %s from group %s of %s (gone, nothing pending)",
                         self.name, name, self.group, stream)  # fmt: skip

    async def _triage(self, entries: list[tuple[str, str, Any]]) -> None:
        """Dead-letter entries delivered too often; process the rest."""
        counts = await self._delivery_counts(entries)
        fresh: list[tuple[str, str, Any]] = []
        exhausted: list[tuple[str, str, Any]] = []
        for entry in entries:
            (exhausted if counts.get(entry[1], 1) > self.settings.max_deliveries else fresh).append(entry)
        for stream, entry_id, fields in exhausted:
            reason = self._errors.pop(entry_id, "handler failed")
            await self._dead_letter(stream, entry_id, fields, f"delivered {counts[entry_id]} times; last: {reason}")
        if fresh:
            await self._process(fresh)

    async def _delivery_counts(self, entries: list[tuple[str, str, Any]]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for stream in {e[0] for e in entries}:
            ids = [e[1] for e in entries if e[0] == stream]
            rows = await self.redis.xpending_range(
                stream,
                self.group,
                min=min(ids, key=entry_key),
                max=max(ids, key=entry_key),
                count=len(ids) + 1000,
                consumername=self.name,
            )
            wanted = set(ids)
            for row in rows:
                eid = as_str(row["message_id"])  # type: ignore[arg-type]
                if eid in wanted:
                    counts[eid] = int(row["times_delivered"])
        return counts

    async def _process(self, entries: list[tuple[str, str, Any]]) -> None:
        started = time.perf_counter()
        deliveries: list[Delivery] = []
        for stream, entry_id, fields in entries:
            if fields is None:  # trimmed away while pending: nothing left to deliver
                log.warning("entry %s of %s was trimmed before it was processed", entry_id, stream)
                if self.metrics:
                    self.metrics.error("trimmed_pending")
                await self.redis.xack(stream, self.group, entry_id)
                continue
            try:
                delivery = Delivery(stream, entry_id, decode(fields[streams.FIELD.encode()]))
            except (DecodeError, KeyError) as exc:
                await self._dead_letter(stream, entry_id, fields, f"undecodable: {exc}")
                continue
            refused = await self.verify(delivery) if self.verify else None
            if refused:
                await self._dead_letter(stream, entry_id, fields, f"refused: {refused}")
            else:
                deliveries.append(delivery)
        if not deliveries:
            return
        try:
            await self.handler(deliveries)
            done = deliveries
        except Exception as exc:
            if self.metrics:
                self.metrics.error("handler")
            log.warning("handler failed on a batch of %d (%r); retrying entry by entry", len(deliveries), exc)
            done = []
            for d in deliveries if len(deliveries) > 1 else []:
                try:
                    await self.handler([d])
                    done.append(d)
                except Exception as one_exc:
                    self._errors[d.entry_id] = repr(one_exc)[:500]
            if len(deliveries) == 1:
                self._errors[deliveries[0].entry_id] = repr(exc)[:500]
        await self._ack(done)
        self.processed += sum(len(d.messages) for d in done)
        if self.metrics:
            elapsed = time.perf_counter() - started
            for stream in {d.stream for d in done}:
                self.metrics.count_in(stream, sum(len(d.messages) for d in done if d.stream == stream))
                self.metrics.observe(stream, elapsed)

    async def _ack(self, done: Iterable[Delivery]) -> None:
        by_stream: dict[str, list[str]] = {}
        for d in done:
            by_stream.setdefault(d.stream, []).append(d.entry_id)
            self._errors.pop(d.entry_id, None)
        if not by_stream:
            return
        pipe = self.redis.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)
        await pipe.execute()

    async def _dead_letter(self, stream: str, entry_id: str, fields: dict[bytes, bytes], reason: str) -> None:
        log.error("dead-lettering %s %s (group %s): %s", stream, entry_id, self.group, reason)
        record: dict[Any, Any] = {
            streams.FIELD: fields.get(streams.FIELD.encode(), b""),
            "stream": stream,
            "id": entry_id,
            "group": self.group,
            "error": reason[:1000],
        }
        pipe = self.redis.pipeline(transaction=True)  # both or neither: never lost, never twice
        pipe.xadd(streams.dead_letter(stream), record, maxlen=self.settings.maxlen, approximate=True)
        pipe.xack(stream, self.group, entry_id)
        await pipe.execute()
        self.dead_lettered += 1
        if self.metrics:
            self.metrics.error("dead_letter")


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a tuple that orders as Redis does ("ms-seq")."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _entries(response: Any) -> list[tuple[str, str, Any]]:
    """Flatten an XREADGROUP reply (list or RESP3 dict form) to (stream, id, fields)."""
    items = response.items() if isinstance(response, dict) else response or []
    out = []
    for stream, rows in items:
        name = as_str(stream)
        for entry_id, fields in rows:
            out.append((name, as_str(entry_id), fields))
    return out
