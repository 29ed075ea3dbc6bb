"""The ingest service: venue connectors -> normalized messages on Redis, plus the recorder.

In ``replay`` mode (the `make run` default) it starts the built-in replay exchange in-process
on ``ingest.replay.data`` (default: ``ingest.replay.sample``, see ``samples.py``), looping at
the recorded pace, and connects the *production* connectors to it - the same code that runs in
``paper`` / ``live`` mode against the venues configured in ``ingest.venues``. In ``synth`` mode the
replay exchange serves a market generated at start instead (``synth.py``), as venue ``synth``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Iterator

import aiohttp
from redis.asyncio import Redis

from services.ingest.book import OrderBook
from services.ingest.connector import Connector
from services.ingest.feed import BusSink, SymbolMap
from services.ingest.recorder import Recorder
from services.ingest.replay import ReplayServer
from services.ingest.samples import replay_data
from services.ingest.synth import synth_session
from services.ingest.venues import get
from shared.bus import RedisBus
from shared.config import Settings
from shared.metrics import ServiceMetrics
from shared.publisher import Publisher
from shared.runtime import Need, ServiceTasks, service_context
from shared.sections.ingest import VenueSettings
from shared.storage import Database
from shared.synth_market import EXCHANGE, SYMBOL, SynthParams

log = logging.getLogger(__name__)


class Ingest:
    """All of one ingest process: connectors, the replay exchange (replay mode), the recorder."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        db: Database | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.db = db
        self.metrics = metrics
        self.publisher = Publisher(RedisBus(redis, settings.bus, metrics))
        self.server: ReplayServer | None = None
        self.connectors: list[Connector] = []
        self.recorder: Recorder | None = None
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    def books(self) -> Iterator[tuple[str, OrderBook]]:
        for connector in self.connectors:
            for book in connector.feed.books.values():
                yield connector.exchange, book

    async def venues(self) -> dict[str, VenueSettings]:
        """The venues to connect to: the replay exchange's in replay and synth mode, else the enabled ones."""
        ingest = self.settings.ingest
        if self.settings.mode not in ("replay", "synth"):
            return {name: v for name, v in ingest.venues.items() if v.enabled and v.symbols}
        replay = ingest.replay
        if self.settings.mode == "synth":  # the generated market, in memory, at its own pace, never looped
            synth = ingest.synth
            params = SynthParams(seed=synth.seed, theta=synth.theta, sigma=synth.sigma, drift=synth.drift)
            sessions = {EXCHANGE: [synth_session(params, synth.minutes)]}
            self.server = ReplayServer(sessions, speed=1.0, loop=False, host=replay.host, port=replay.port)
            log.info("synth: generated %.0f minutes of %s %s (seed %d)", synth.minutes, EXCHANGE, SYMBOL, synth.seed)
        else:
            self.server = ReplayServer.from_path(
                replay_data(replay), speed=replay.speed, loop=replay.loop, host=replay.host, port=replay.port
            )
        await self.server.start()
        return {name: self.server.venue_settings(name, ingest.venues.get(name)) for name in self.server.sessions}

    async def _markets(self, http: aiohttp.ClientSession, name: str, venue: VenueSettings) -> SymbolMap:
        adapter = get(name)
        try:
            markets, _ = await adapter.fetch_markets(http, venue.base_url_http)
            return markets
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            log.warning("%s: market list unavailable (%s); using the one shipped with Tradewind", name, exc)
            return adapter.shipped_markets()

    async def run(self) -> None:
        """Run until ``stop()``; everything published is flushed to Redis before returning."""
        tasks = ServiceTasks("ingest")
        writer = tasks.adopt(self.publisher.start())
        try:
            venues = await self.venues()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                for name, venue in venues.items():
                    markets = await self._markets(http, name, venue)
                    sink = BusSink(self.publisher, name)
                    try:
                        made = get(name).connectors(
                            venue, self.settings.ingest, sink, markets, http=http, metrics=self.metrics
                        )
                    except KeyError as exc:  # a configured symbol the venue does not list
                        log.error("%s: %s; venue skipped", name, exc.args[0])
                        continue
                    self.connectors.extend(made)
                    log.info("%s: %d symbols on %d connection(s) via %s", name, len(venue.symbols), len(made),
                             venue.base_url_ws)  # fmt: skip
                workers = [tasks.start(c.run(), name=f"connector-{c.name}") for c in self.connectors]
                if self.db is not None and self.settings.ingest.recorder.enabled:
                    self.recorder = Recorder(
                        self.redis, self.db, sorted(venues), self.settings.ingest.recorder, self.settings.bus,
                        books=self.books, metrics=self.metrics,
                    )  # fmt: skip
                    workers.append(tasks.start(self.recorder.run(), name="recorder"))
                workers.append(tasks.start(self._count_frames(), name="frame-metrics"))
                await tasks.until(self._stopping.wait())  # a dead connector, recorder or writer ends the service
                log.info("ingest stopping: closing %d connection(s)", len(self.connectors))
                for c in self.connectors:
                    c.stop()
                if self.recorder is not None:
                    self.recorder.stop()
                _, pending = await asyncio.wait(workers, timeout=10)
                for t in pending:
                    t.cancel()
        finally:
            for t in tasks.tasks:
                if t is not writer:
                    t.cancel()
            await self.publisher.close()  # everything published is sent (unless the writer is what died)
            await tasks.wait(0)
            if self.server is not None:
                await self.server.stop()

    async def _count_frames(self) -> None:
        """Frames received per venue, as ``tradewind_messages_in{stream="ws:<exchange>"}``."""
        seen: dict[str, int] = {}
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 1.0)
            if self.metrics is None:
                continue
            for c in self.connectors:
                n = c.feed.frames - seen.get(c.name, 0)
                seen[c.name] = c.feed.frames
                if n:
                    self.metrics.count_in(f"ws:{c.exchange}", n)


GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> tuple[int, int, int]:
    """Collect garbage less often; return the thresholds in force before.

    Ingest allocates millions of short-lived containers (every parsed level is a tuple in a
    list) and keeps almost none; with CPython's default gen-0 threshold of 700 the collector runs
    every few depth frames and scans everything still queued for Redis - a third of the time at
    200k frames/s. Objects alive at start-up (modules, market lists) are frozen out of it.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return before


async def main(settings: Settings) -> None:
    tune_gc()
    recording: Need = "optional" if settings.ingest.recorder.enabled else "unused"  # the recorder is the only reader
    async with service_context(settings, "ingest", database=recording) as svc:
        ingest = Ingest(settings, svc.redis, svc.db, svc.metrics)
        svc.on_stop(ingest.stop)
        await ingest.run()
