"""The alerts service: follows risk:events, md:status and policy:updates (and arb_executions when
PostgreSQL is at hand) and tells people what happened through the configured sinks.

Reads with plain XREAD from the streams' ends at start: it never holds back a consumer group, its
Redis user is read-only, and a restart neither repeats old alerts nor blocks anything. On a Redis
Cluster the followed streams sit in different hash slots, and a multi-key XREAD across slots is
refused: one blocking XREAD per slot (``slot_reads``), each its own task. The sinks sit
behind ``services.alerts.sinks.Dispatcher``: a failing sink is logged and counted, never waited on
by trading (no trading service waits on this one at all).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from typing import Any

import asyncpg
from redis.asyncio import Redis

from services.alerts import rules
from services.alerts.sinks import Dispatcher, configured_sinks
from shared.bus import TRANSIENT, by_slot, is_cluster, when_redis_answers
from shared.config import Settings
from shared.runtime import ServiceTasks, service_context
from shared.schemas import PolicyUpdate, RiskEvent, Status, decode, streams
from shared.storage import Database

log = logging.getLogger(__name__)

FOLLOWED = (streams.RISK_EVENTS, streams.MD_STATUS, streams.POLICY_UPDATES)
UNWINDS = (
    "SELECT execution_id, exchange, assets, status, failure, expected_profit, realized_profit, finished_at"
    " FROM arb_executions WHERE status IN ('unwound', 'unwind_failed') AND finished_at > $1 ORDER BY finished_at"
)


class Watcher:
    """Turns messages into alerts; remembers which feeds are bad and since when."""

    def __init__(self, dispatcher: Dispatcher, stale_after_s: float) -> None:
        self.dispatcher = dispatcher
        self.stale_after_ns = int(stale_after_s * rules.NS)
        self.bad_feeds: dict[str, tuple[str, int, str]] = {}  # venue -> (state, since ns, detail)

    def on_message(self, message: Any) -> None:
        if isinstance(message, RiskEvent):
            alert = rules.from_risk_event(message)
            if alert is not None:
                self.dispatcher.submit(alert)
        elif isinstance(message, PolicyUpdate):
            self.dispatcher.submit(rules.from_policy_update(message))
        elif isinstance(message, Status):
            if rules.feed_went_bad(message):
                self.bad_feeds.setdefault(message.exchange, (message.state, time.time_ns(), message.detail))
            else:
                self.bad_feeds.pop(message.exchange, None)

    def check_feeds(self, now_ns: int) -> None:
        for venue, (state, since, detail) in self.bad_feeds.items():
            if now_ns - since >= self.stale_after_ns:
                self.dispatcher.submit(rules.stale_feed(venue, state, since, now_ns, detail))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def stream_ends(redis: Redis, names: tuple[str, ...]) -> dict[str, str]:
    """The id of each stream's last entry now ("0-0" for a stream not created yet)."""
    ends: dict[str, str] = {}
    for name in names:
        last: Any = await redis.xrevrange(name, count=1)
        ends[name] = _text(last[0][0]) if last else "0-0"
    return ends


def slot_reads(ends: dict[str, str], cluster: bool) -> list[dict[str, str]]:
    """The streams of ``ends`` (with their start ids) split into XREADs a server accepts: one read on
    a single server, one per hash slot on a cluster."""
    return [{name: ends[name] for name in group} for group in by_slot(list(ends), cluster)]


async def follow(redis: Redis, watcher: Watcher, ids: dict[str, str], block_ms: int) -> None:
    """XREAD the followed streams after ``ids``, forever. Redis restarting is waited out with backoff, reading
    on after the last entry seen: no alert is lost to the outage, none repeated."""
    backoff = 0.1
    while True:
        try:
            response: Any = await redis.xread(ids, count=500, block=block_ms)  # type: ignore[arg-type]
        except TRANSIENT as exc:
            log.warning("alerts: lost Redis (%s); reading on in %.1fs", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        backoff = 0.1
        for raw_stream, entries in response or []:
            stream = _text(raw_stream)
            for entry_id, fields in entries:
                ids[stream] = _text(entry_id)
                payload = fields.get(streams.FIELD.encode()) or fields.get(streams.FIELD)
                try:
                    messages = decode(payload)
                except ValueError as exc:
                    log.warning("alerts: skipping entry %s of %s: %s", ids[stream], stream, exc)
                    continue
                for message in messages:
                    watcher.on_message(message)


async def tick_feeds(watcher: Watcher) -> None:
    while True:
        watcher.check_feeds(time.time_ns())
        await asyncio.sleep(1.0)


async def poll_unwinds(db: Database, dispatcher: Dispatcher, every_s: float) -> None:
    """Alert on arbitrage executions unwound since the service started."""
    since = datetime.datetime.now(datetime.UTC)
    while True:
        await asyncio.sleep(every_s)
        try:
            rows = await db.fetch(UNWINDS, since)
        except asyncpg.UndefinedTableError:  # arbitrage's migration has not run on this database
            continue
        for row in rows:
            since = max(since, row["finished_at"])
            dispatcher.submit(rules.from_unwind(dict(row)))


async def main(settings: Settings) -> None:
    async with service_context(settings, "alerts", database="optional", migrate=False) as svc:
        sinks = configured_sinks(settings.alerts)
        if not sinks:
            log.warning(
                "alerts: no sink configured (TRADEWIND_ALERTS__WEBHOOK_URL, or TRADEWIND_ALERTS__TELEGRAM_TOKEN"
                " and TRADEWIND_ALERTS__TELEGRAM_CHAT_ID); alerts are only logged"
            )
        dispatcher = Dispatcher(settings.alerts, sinks, svc.metrics)
        watcher = Watcher(dispatcher, settings.alerts.feed_stale_after_s)
        tasks = ServiceTasks("alerts")
        tasks.start(dispatcher.run(), "deliver")
        ends = await when_redis_answers(  # before the log line below: what follows it is seen
            lambda: stream_ends(svc.redis, FOLLOWED), "alerts: find the streams' ends", settings.bus.start_wait_s
        )
        for i, ids in enumerate(slot_reads(ends, is_cluster(svc.redis))):
            tasks.start(follow(svc.redis, watcher, ids, settings.bus.block_ms), f"follow-{i}")
        tasks.start(tick_feeds(watcher), "feeds")
        if svc.db is not None:
            tasks.start(poll_unwinds(svc.db, dispatcher, settings.alerts.arbitrage_poll_s), "unwinds")
        log.info("alerts: following %s; sinks: %s", ", ".join(FOLLOWED), ", ".join(s.name for s in sinks) or "none")
        try:
            await tasks.until(asyncio.Event().wait())
        finally:
            tasks.cancel()
            await tasks.wait(1.0)
