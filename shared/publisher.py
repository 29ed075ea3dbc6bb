"""The bus's writer for hot paths: ``put`` is synchronous, one task pipelines everything queued to Redis.

Split from ``shared.bus`` (consumers, the publish primitives) because it is its own idea: a bounded
buffer that survives Redis refusing writes, with the retry and shedding rules in one place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from redis.exceptions import RedisError

from shared.bus import TRANSIENT, RedisBus
from shared.schemas import AnyMessage, encode

log = logging.getLogger(__name__)

Entry = tuple[str, bytes, int]  # (stream, encoded payload, messages in it)


class Publisher:
    """Drain-and-pipeline writer: ``put`` is cheap and synchronous; one task sends everything queued.

    Messages are grouped per stream into entries of ``messages_per_entry``. When Redis fails - down,
    or refusing writes (OOM, READONLY, NOPERM) - the entries it did not take are kept and sent again
    with backoff, in order, so nothing is lost or written twice; ``put`` waits when more than
    ``max_buffered`` messages are queued, and if producers that do not wait push past that bound
    while Redis is failing, the oldest kept entries are shed (logged, counted as ``publish_shed``).
    A message that cannot be encoded is dropped alone (``publish_encode``), never its batch.
    """

    def __init__(self, bus: RedisBus, max_buffered: int = 200_000) -> None:
        self.bus = bus
        self.per_entry = bus.settings.messages_per_entry
        self.max_buffered = max_buffered
        self._buffer: dict[str, list[AnyMessage]] = {}
        self._buffered = 0
        self._held: list[Entry] = []  # encoded entries Redis has not taken yet, oldest first
        self._held_msgs = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.shed = 0  # messages dropped because Redis refused them for too long
        self.failures = 0  # sends Redis refused or broke off (each retried)
        self.unencodable = 0

    def start(self) -> asyncio.Task[None]:
        """Start the writer task and return it (a service supervises it: see ``shared.runtime``)."""
        self._task = asyncio.create_task(self._run(), name="publisher")
        return self._task

    @property
    def buffered(self) -> int:
        """Messages queued and not yet sent (producers that read a socket slow down above a limit)."""
        return self._buffered + self._held_msgs

    def put_nowait(self, stream: str, message: AnyMessage) -> None:
        buffer = self._buffer.get(stream)
        if buffer is None:
            buffer = self._buffer[stream] = []
        buffer.append(message)
        self._buffered += 1
        if self._buffered == 1:  # only the empty → non-empty edge needs to wake the writer
            self._drained.clear()
            self._wake.set()

    def put_many(self, stream: str, messages: Sequence[AnyMessage]) -> None:
        if not messages:
            return
        self._buffer.setdefault(stream, []).extend(messages)
        self._buffered += len(messages)
        self._drained.clear()
        self._wake.set()

    async def put(self, stream: str, message: AnyMessage) -> None:
        while self.buffered >= self.max_buffered:
            await self._drained.wait()
        self.put_nowait(stream, message)

    async def flush(self) -> None:
        """Wait until everything queued so far is in Redis."""
        await self._drained.wait()

    async def close(self) -> None:
        """Send what is queued, then stop the writer task."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        if self._task.done() and (self._task.cancelled() or self._task.exception() is not None):
            # the writer died (its service was told: see shared.runtime.ServiceTasks); say what it leaves
            log.error("publisher closed after its writer died: %d messages not sent", self.buffered)
            return
        await self._task

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            if not self._held:
                await self._wake.wait()
            self._wake.clear()
            if self._buffered:
                batch, self._buffer = self._buffer, {}
                self._buffered = 0
                self._held += self._encode(batch)
                self._held_msgs = sum(n for _, _, n in self._held)
            if self._held:
                failed, error = await self._send(self._held)
                self._held = failed
                self._held_msgs = sum(n for _, _, n in failed)
                if failed:
                    self.failures += 1
                    n = self._held_msgs
                    log.warning("publish of %d messages failed (%s); retrying in %.2fs", n, error, backoff)
                    if self.bus.metrics:
                        self.bus.metrics.error("publish_retry")
                    self._shed_beyond_bound()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.05
            if not self._buffered:
                self._drained.set()
                if self._closing:
                    return
            else:
                self._wake.set()

    async def _send(self, entries: list[Entry]) -> tuple[list[Entry], BaseException | None]:
        """Send ``entries``; return those Redis did not take (in order) and why."""
        try:
            results = await self.bus.send_encoded(entries)
        except (RedisError, *TRANSIENT) as exc:
            return entries, exc  # the connection broke: nobody knows which went in, so all go again
        failed = [e for e, r in zip(entries, results, strict=True) if isinstance(r, RedisError)]
        return failed, next((r for r in results if isinstance(r, RedisError)), None)

    def _encode(self, batch: dict[str, list[AnyMessage]]) -> list[Entry]:
        entries: list[Entry] = []
        per = self.per_entry
        for stream, msgs in batch.items():
            for i in range(0, len(msgs), per):
                chunk = msgs[i : i + per]
                try:
                    entries.append((stream, encode(chunk), len(chunk)))
                except Exception:  # some message will not encode: drop it alone, keep the rest
                    good = [m for m in chunk if self._encodable(stream, m)]
                    if good:
                        entries.append((stream, encode(good), len(good)))
        return entries

    def _encodable(self, stream: str, message: AnyMessage) -> bool:
        try:
            encode(message)
            return True
        except Exception as exc:
            self.unencodable += 1
            log.error("dropped a message for %s that cannot be encoded (%r): %.300r", stream, exc, message)
            if self.bus.metrics:
                self.bus.metrics.error("publish_encode")
            return False

    def _shed_beyond_bound(self) -> None:
        over = self.buffered - self.max_buffered
        if over <= 0:
            return
        k = dropped = 0
        while over > 0 and k < len(self._held):
            n = self._held[k][2]
            k, dropped, over = k + 1, dropped + n, over - n
        del self._held[:k]
        self._held_msgs -= dropped
        self.shed += dropped
        log.error(
            "Redis has refused writes for too long and %d messages are queued (max_buffered %d):"
            " dropped the oldest %d messages (%d entries)",
            self.buffered + dropped, self.max_buffered, dropped, k,
        )  # fmt: skip
        if self.bus.metrics:
            self.bus.metrics.error("publish_shed")
