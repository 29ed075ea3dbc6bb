"""Alerts: what each event says, deduplication and the rate limit, delivery to a real local webhook
and a fake Telegram Bot API over HTTP, and a failing sink that neither raises nor blocks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from services.alerts import rules
from services.alerts.service import Watcher
from services.alerts.sinks import Dispatcher, configured_sinks
from shared.metrics import ServiceMetrics
from shared.schemas import PolicyUpdate, RiskEvent, Status
from shared.sections.alerts import AlertsSettings


class Sink:
    """A local HTTP server that records what it is sent: a webhook, or Telegram's sendMessage."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.status = status
        self.arrived = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.server = TestServer(app)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.path, await request.json()))
        self.arrived.set()
        return web.json_response({"ok": self.status == 200, "description": "nope"}, status=self.status)

    def url(self, path: str = "/hook") -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink()
    await s.server.start_server()
    yield s
    await s.server.close()


def halt_event(reason: str = "drill", exchange: str | None = None) -> RiskEvent:
    detail = {"reason": reason, "issued_by": "cli:me@host", "cause": "human", "force": False}
    return RiskEvent("halt", time.time_ns(), "critical", exchange, None, detail)  # type: ignore[arg-type]


def test_each_alert_says_what_where_why_and_what_was_done():
    alert = rules.from_risk_event(halt_event("fat finger", "binance"))
    assert alert is not None
    assert (alert.what, alert.where, alert.why) == ("Trading halted by a human", "binance", "fat finger")
    assert "risk.halted" in alert.done and "fat finger" in alert.text()
    feed = {"reason": "no data for 12s", "cause": "stale"}
    assert rules.from_risk_event(RiskEvent("halt", 1, "warning", "kraken", None, feed)).what == (  # type: ignore[union-attr]
        "Trading halted by the risk service"
    )
    drawdown = rules.from_risk_event(RiskEvent("drawdown_halt", 1, "critical", detail={"drawdown_intraday": 0.06}))
    assert drawdown is not None and "drawdown_intraday=0.06" in drawdown.why and "--force" in drawdown.done
    for kind in ("crash_start", "hedge_open", "hedge_closed", "resume"):
        assert rules.from_risk_event(RiskEvent(kind, 1, exchange="okx", symbol="BTC/USDT")) is not None
    assert rules.from_risk_event(RiskEvent("service_start", 1)) is None
    promoted = rules.from_policy_update(PolicyUpdate("p7", "ppo", "file:///x", 1, markets=[("binance", "BTC/USDT")]))
    assert promoted.what == "Policy p7 (ppo) promoted" and promoted.where == "binance:BTC/USDT"


def test_a_feed_is_reported_only_once_bad_for_longer_than_the_threshold():
    dispatcher = Dispatcher(AlertsSettings(), [])
    watcher = Watcher(dispatcher, stale_after_s=30)
    watcher.on_message(Status("kraken", "stale", 1))
    since = watcher.bad_feeds["kraken"][1]
    watcher.check_feeds(since + 29 * rules.NS)
    assert not dispatcher.queue
    watcher.check_feeds(since + 31 * rules.NS)
    assert [a.kind for a in dispatcher.queue] == ["feed_stale"] and "31s" in dispatcher.queue[0].why
    watcher.on_message(Status("kraken", "connected", 2))
    assert "kraken" not in watcher.bad_feeds


def test_repeats_are_dropped_and_the_rate_is_capped_with_a_count_of_the_rest():
    now = [0.0]
    dispatcher = Dispatcher(AlertsSettings(dedupe_s=60, max_per_minute=3), [], clock=lambda: now[0])
    assert dispatcher.submit(rules.from_risk_event(halt_event("a")))  # type: ignore[arg-type]
    assert not dispatcher.submit(rules.from_risk_event(halt_event("a")))  # type: ignore[arg-type]
    assert dispatcher.submit(rules.from_risk_event(halt_event("b")))  # type: ignore[arg-type]
    assert dispatcher.submit(rules.from_risk_event(halt_event("c")))  # type: ignore[arg-type]
    assert not dispatcher.submit(rules.from_risk_event(halt_event("d")))  # type: ignore[arg-type]
    assert dispatcher.suppressed == 1
    now[0] = 61.0  # a minute later: the same alert is news again, and the suppressed one is counted in
    assert dispatcher.submit(rules.from_risk_event(halt_event("a")))  # type: ignore[arg-type]
    assert "1 more alerts suppressed" in dispatcher.queue[-1].done


@pytest.mark.integration
async def test_webhook_and_telegram_receive_the_alert(sink: Sink):
    settings = AlertsSettings(
        webhook_url=SecretStr(sink.url()),
        telegram_token=SecretStr("123:abc"),
        telegram_chat_id="42",
        telegram_api_url=sink.url("/fakebot"),
    )
    dispatcher = Dispatcher(settings, configured_sinks(settings))
    runner = asyncio.create_task(dispatcher.run())
    try:
        dispatcher.submit(rules.from_risk_event(halt_event("drill")))  # type: ignore[arg-type]
        async with asyncio.timeout(10):
            while len(sink.received) < 2:
                sink.arrived.clear()
                await sink.arrived.wait()
    finally:
        runner.cancel()
    by_path = dict(sink.received)
    hook = by_path["/hook"]
    assert hook["kind"] == "halt" and hook["why"] == "drill" and hook["where"] == "every venue"
    telegram = by_path["/fakebot/bot123:abc/sendMessage"]
    assert telegram["chat_id"] == "42" and "Trading halted" in telegram["text"] and "drill" in telegram["text"]


@pytest.mark.integration
async def test_a_failing_sink_is_counted_and_never_blocks_the_caller(sink: Sink):
    sink.status = 500
    settings = AlertsSettings(webhook_url=SecretStr(sink.url()), retries=1, timeout_s=2)
    metrics = ServiceMetrics("alerts")
    dispatcher = Dispatcher(settings, configured_sinks(settings), metrics)
    runner = asyncio.create_task(dispatcher.run())
    try:
        started = time.monotonic()
        for i in range(5):
            dispatcher.submit(rules.from_risk_event(halt_event(f"r{i}")))  # type: ignore[arg-type]
        assert time.monotonic() - started < 0.05  # submit only queues
        async with asyncio.timeout(20):
            while dispatcher.sent < 5:
                await asyncio.sleep(0.05)
    finally:
        runner.cancel()
    assert len(sink.received) == 10  # every alert tried twice
    errors = metrics.registry.get_sample_value(
        "tradewind_errors_total", {"service": "alerts", "kind": "alert_sink_webhook"}
    )
    assert errors == 5
