"""The I/O half of a feed: one websocket connection to a venue, kept alive.

``Connector`` owns everything that is the same for every venue: connecting with the
``websockets`` library, sending the subscription frames (already chunked by the venue),
protocol pings, an optional application heartbeat, staleness detection (no message for
``ingest.stale_after_s`` -> ``md:status`` stale and a reconnect), reconnecting with exponential
backoff and full jitter, fetching REST snapshots the ``Feed`` asks for (with retries), and
reporting each state change on ``md:status``.

A venue subclass is mostly data: ``ws_url``, ``subscribe_frames``, ``snapshot_url`` and, if the
venue wants one, ``heartbeat_frame``. See ``venues/README.md`` for adding a venue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from typing import Any, Protocol

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from services.ingest.feed import BusSink, Feed
from shared.metrics import ServiceMetrics
from shared.sections.ingest import IngestSettings, VenueSettings

log = logging.getLogger(__name__)


class Tap(Protocol):
    """Sees every raw frame and REST snapshot body as received (``tradewind capture`` records them)."""

    def frame(self, frame: str | bytes, recv_ts: int) -> None: ...

    def rest(self, url: str, body: bytes, recv_ts: int) -> None: ...


class Stale(Exception):
    """No message for longer than ``stale_after_s``."""


_rng = random.Random()


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random = _rng) -> float:
    """Exponential backoff with jitter: uniform in [low, min(high, low * 2**attempt)].

    The jitter spreads the reconnects of many connectors (and many users) after a venue outage.
    """
    ceiling = min(high, low * (2 ** min(attempt, 30)))
    return low + rng.random() * max(0.0, ceiling - low)


class Connector:
    """Keep one websocket connection to a venue up and feed its frames to ``feed``."""

    heartbeat_interval_s: float | None = None  # venues with an application-level ping set this
    subscribe_pause_s = 0.0  # between subscription frames, for venues that limit messages per second

    def __init__(
        self,
        feed: Feed,
        venue: VenueSettings,
        settings: IngestSettings,
        *,
        http: aiohttp.ClientSession | None = None,
        metrics: ServiceMetrics | None = None,
        name: str | None = None,
    ) -> None:
        self.feed = feed
        self.venue = venue
        self.settings = settings
        self.exchange = feed.exchange
        self.name = name or self.exchange
        self.metrics = metrics
        self._http = http
        self._own_http = http is None
        self._stopping = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._snapshot_tasks: dict[str, asyncio.Task[None]] = {}
        self._last_rx = 0.0
        self.connections = 0  # successful connects so far
        self.reconnects = 0
        self.connected = asyncio.Event()
        self.tap: Tap | None = None
        feed.request_snapshot = self._want_snapshot

    # -- venue hooks -------------------------------------------------------------------------

    def ws_url(self) -> str:
        raise NotImplementedError

    def subscribe_frames(self) -> Sequence[str]:
        """Frames to send after connecting, each within the venue's per-message limits."""
        return ()

    def snapshot_url(self, venue_symbol: str) -> str | None:
        """REST URL of ``venue_symbol``'s book snapshot; None when the venue's stream starts with one."""
        return None

    def heartbeat_frame(self) -> str | None:
        return None

    def resync_frames(self, venue_symbol: str) -> Sequence[str]:
        """Frames that make the venue resend ``venue_symbol``'s book; venues that resync by
        resubscribing return them (and no ``snapshot_url``)."""
        return ()

    # -- engine ------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        if self._ws is not None:
            self._closing = asyncio.ensure_future(self._ws.close())

    async def run(self) -> None:
        """Connect, read, reconnect, until ``stop()``."""
        attempt = 0
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        try:
            while not self._stopping.is_set():
                reason = await self._session()
                if self._stopping.is_set():
                    break
                self.connected.clear()
                self.feed.reset()
                self._cancel_snapshots()
                self.feed.status("disconnected", detail=reason)
                if self.metrics:
                    self.metrics.reconnect(self.exchange)
                if self._session_frames:  # the connection worked: the next failure starts the backoff afresh
                    attempt = 0
                delay = backoff_delay(attempt, self.settings.reconnect_min_s, self.settings.reconnect_max_s)
                attempt += 1
                log.info("%s: %s; reconnecting in %.2fs", self.name, reason, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                self.reconnects += 1
        finally:
            self._cancel_snapshots()
            if self._own_http and self._http is not None:
                await self._http.close()

    async def _session(self) -> str:
        """One connection's life; returns why it ended."""
        url = self.ws_url()
        self._session_frames = 0
        try:
            async with connect(
                url,
                ping_interval=self.settings.ping_interval_s,
                ping_timeout=self.settings.ping_timeout_s,
                max_size=self.settings.max_frame_bytes,
                max_queue=4096,
                open_timeout=15,
                close_timeout=2,
            ) as ws:
                self._ws = ws
                self._last_rx = time.monotonic()
                for i, frame in enumerate(self.subscribe_frames()):
                    if i and self.subscribe_pause_s:
                        await asyncio.sleep(self.subscribe_pause_s)
                    await ws.send(frame)
                self.connections += 1
                self.feed.status("connected", detail=_redact(url))
                self.connected.set()
                watchers = [asyncio.create_task(self._watch_stale(ws))]
                if self.heartbeat_interval_s:
                    watchers.append(asyncio.create_task(self._heartbeat(ws)))
                try:
                    return await self._read(ws)
                finally:
                    for w in watchers:
                        w.cancel()
                    self._ws = None
        except Stale as exc:
            return f"stale: {exc}"
        except ConnectionClosed as exc:
            return f"closed by venue ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            if self.metrics:
                self.metrics.error("connect")
            return f"connect to {_redact(url)} failed: {type(exc).__name__}: {exc}"

    async def _read(self, ws: ClientConnection) -> str:
        feed = self.feed
        sink = feed.sink
        backlog = isinstance(sink, BusSink)
        on_frame = feed.on_frame
        clock = time.time_ns
        n = 0
        monotonic = time.monotonic
        tap = self.tap
        async for frame in ws:
            if tap is not None:
                tap.frame(frame, clock())
            on_frame(frame, clock())
            self._last_rx = monotonic()
            n += 1
            if n & 63 == 0 or n < 64:  # the backlog is checked every 64 frames
                self._session_frames = n
                if backlog and sink.backlogged:  # type: ignore[attr-defined]
                    await sink.drain()  # type: ignore[attr-defined]
        self._session_frames = n
        if self._stale_reason:
            raise Stale(self._stale_reason)
        return "closed by venue" if not self._stopping.is_set() else "stopped"

    _stale_reason = ""
    _closing: asyncio.Future[None] | None = None
    _session_frames = 0

    async def _watch_stale(self, ws: ClientConnection) -> None:
        limit = self.settings.stale_after_s
        self._stale_reason = ""
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            idle = time.monotonic() - self._last_rx
            if idle > limit:
                self._stale_reason = f"no message for {idle:.1f}s (limit {limit:g}s)"
                self.feed.status("stale", detail=self._stale_reason)
                await ws.close(code=1000, reason="stale")
                return

    async def _heartbeat(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s or 30.0)
            frame = self.heartbeat_frame()
            if frame is not None:
                await ws.send(frame)

    # -- REST snapshots ------------------------------------------------------------------------

    def _want_snapshot(self, venue_symbol: str, delay: float) -> None:
        task = self._snapshot_tasks.get(venue_symbol)
        if task is not None and not task.done() and task is not asyncio.current_task():
            return  # already on its way (a request made while handling a snapshot needs a new one)
        self._snapshot_tasks[venue_symbol] = asyncio.get_running_loop().create_task(
            self._fetch_snapshot(venue_symbol, delay), name=f"snapshot-{self.exchange}-{venue_symbol}"
        )

    async def _fetch_snapshot(self, venue_symbol: str, delay: float) -> None:
        resync = self.resync_frames(venue_symbol)
        if resync:  # the venue resends the book when resubscribed: no REST snapshot to fetch
            if delay:
                await asyncio.sleep(delay)
            with contextlib.suppress(ConnectionClosed):
                for frame in resync:
                    if self._ws is not None:
                        await self._ws.send(frame)
            return
        url = self.snapshot_url(venue_symbol)
        if url is None or self._http is None:
            return
        attempt = 0
        if delay:
            await asyncio.sleep(delay)
        while not self._stopping.is_set():
            try:
                async with self._http.get(url) as resp:
                    body = await resp.read()
                    if resp.status == 200:
                        if self.tap is not None:
                            self.tap.rest(url, body, time.time_ns())
                        self.feed.on_snapshot(venue_symbol, body, time.time_ns())
                        return
                    problem = f"HTTP {resp.status}: {body[:200]!r}"
                    if resp.status in (418, 429):  # Binance: rate limited / banned — respect Retry-After
                        attempt = max(attempt, 4)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if self.metrics:
                self.metrics.error("snapshot")
            wait = backoff_delay(attempt, self.settings.snapshot_retry_s, self.settings.reconnect_max_s)
            log.warning("%s: snapshot of %s failed (%s); retrying in %.1fs", self.name, venue_symbol, problem, wait)
            attempt += 1
            await asyncio.sleep(wait)

    def _cancel_snapshots(self) -> None:
        for task in self._snapshot_tasks.values():
            task.cancel()
        self._snapshot_tasks.clear()


def _redact(url: str) -> str:
    """URLs in logs and statuses without query strings (listen keys and tokens live there)."""
    return url.split("?", 1)[0]


def chunked(items: Sequence[Any], size: int) -> list[list[Any]]:
    """Split ``items`` into lists of at most ``size`` (subscription limits per message/connection)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
