"""Where alerts go (a generic JSON webhook, Telegram's Bot API) and the dispatcher in front of them.

The dispatcher drops an alert seen again within ``dedupe_s`` (same what and where), sends at most
``max_per_minute`` and sums up the rest in the next alert it may send, and hands alerts to the sinks
from a bounded queue: a slow or failing sink delays only other alerts, never the caller, and after
its retries the alert is logged and counted (``tradewind_errors{kind="alert_sink_<name>"}``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import aiohttp

from services.alerts.rules import Alert
from shared.metrics import ServiceMetrics
from shared.sections.alerts import AlertsSettings

log = logging.getLogger(__name__)


class Sink(Protocol):
    name: str

    async def send(self, session: aiohttp.ClientSession, alert: Alert) -> None: ...


class SinkError(RuntimeError):
    """A sink refused or failed a delivery; the text names the sink and the answer."""


class Webhook:
    """POST the alert as JSON to one URL."""

    name = "webhook"

    def __init__(self, url: str) -> None:
        self.url = url

    async def send(self, session: aiohttp.ClientSession, alert: Alert) -> None:
        async with session.post(self.url, json=alert.as_json()) as response:
            if response.status >= 300:
                raise SinkError(f"webhook answered HTTP {response.status}")


class Telegram:
    """``sendMessage`` to one chat through the Bot API at ``api_url``."""

    name = "telegram"

    def __init__(self, api_url: str, token: str, chat_id: str) -> None:
        self.url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"
        self.chat_id = chat_id

    async def send(self, session: aiohttp.ClientSession, alert: Alert) -> None:
        async with session.post(self.url, json={"chat_id": self.chat_id, "text": alert.text()}) as response:
            body: dict[str, Any] = await response.json(content_type=None)
            if response.status >= 300 or not body.get("ok"):
                raise SinkError(f"Telegram answered HTTP {response.status}: {body.get('description', '')}")


def configured_sinks(settings: AlertsSettings) -> list[Sink]:
    sinks: list[Sink] = []
    if settings.webhook_url is not None:
        sinks.append(Webhook(settings.webhook_url.get_secret_value()))
    if settings.telegram_token is not None and settings.telegram_chat_id:
        sinks.append(
            Telegram(settings.telegram_api_url, settings.telegram_token.get_secret_value(), settings.telegram_chat_id)
        )
    return sinks


class Dispatcher:
    """Deduplicate, rate-limit and queue alerts; ``run()`` delivers them."""

    def __init__(
        self,
        settings: AlertsSettings,
        sinks: list[Sink],
        metrics: ServiceMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.sinks = sinks
        self.metrics = metrics
        self.clock = clock
        self.queue: collections.deque[Alert] = collections.deque(maxlen=settings.queue_size)
        self._ready = asyncio.Event()
        self._seen: dict[str, float] = {}  # alert key -> when it was last let through
        self._sent_at: collections.deque[float] = collections.deque()
        self.suppressed = 0  # over the rate limit since the last alert let through
        self.sent = 0

    def submit(self, alert: Alert) -> bool:
        """Queue ``alert`` unless it is a repeat or over the rate; never blocks. True when queued."""
        now = self.clock()
        self._seen = {k: t for k, t in self._seen.items() if now - t < self.settings.dedupe_s}
        if alert.key in self._seen:
            return False
        while self._sent_at and now - self._sent_at[0] >= 60.0:
            self._sent_at.popleft()
        if len(self._sent_at) >= self.settings.max_per_minute:
            self.suppressed += 1
            return False
        self._seen[alert.key] = now
        self._sent_at.append(now)
        if self.suppressed:
            alert = replace(alert, done=f"{alert.done} ({self.suppressed} more alerts suppressed by the rate limit)")
            self.suppressed = 0
        self.queue.append(alert)
        self._ready.set()
        return True

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self.queue:
                    alert = self.queue.popleft()
                    await asyncio.gather(*(self._deliver(session, sink, alert) for sink in self.sinks))
                    self.sent += 1

    async def _deliver(self, session: aiohttp.ClientSession, sink: Sink, alert: Alert) -> None:
        for attempt in range(self.settings.retries + 1):
            try:
                await sink.send(session, alert)
                log.info("alert %s sent to %s: %s (%s)", alert.kind, sink.name, alert.what, alert.where)
                return
            except (aiohttp.ClientError, TimeoutError, SinkError, ValueError) as exc:
                error = exc
                if attempt < self.settings.retries:
                    await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        log.warning("alert %s not delivered to %s after %d attempts: %r", alert.kind, sink.name, attempt + 1, error)
        if self.metrics is not None:
            self.metrics.error(f"alert_sink_{sink.name}")
