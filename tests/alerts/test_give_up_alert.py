"""A service the supervisor gives up on (a crash loop) raises an alert: the supervisor reports it
(shared.stack_events) as a ``service_gave_up`` risk event on a real Redis, the alerts service's reader
picks it up from the stream and the webhook receives what, where and why."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from rich.console import Console

from services.alerts import rules
from services.alerts.service import FOLLOWED, Watcher, follow, stream_ends
from services.alerts.sinks import Dispatcher, configured_sinks
from shared.config import BusSettings, SupervisorSettings
from shared.sections.alerts import AlertsSettings
from shared.stack_events import give_up_event, give_up_reporter
from shared.supervisor import ServiceSpec, Supervisor
from tests.alerts.test_alerts import Sink

FAST = SupervisorSettings(
    restart_backoff_s=0.05, restart_backoff_max_s=0.1, crash_loop_restarts=2, crash_loop_window_s=30, stop_grace_s=2
)


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink()
    await s.server.start_server()
    yield s
    await s.server.close()


def test_the_give_up_event_becomes_a_critical_alert_naming_the_service():
    alert = rules.from_risk_event(give_up_event("executor", "crash loop: exited 3 times within 30s", 5))
    assert alert is not None and alert.kind == "service_gave_up" and alert.severity == "critical"
    assert (alert.what, alert.where, alert.why) == (
        "Service executor given up",
        "executor",
        "crash loop: exited 3 times within 30s",
    )
    assert "stopped restarting" in alert.done and alert.ts == 5


@pytest.mark.integration
async def test_a_crash_looping_service_reaches_the_webhook(redis_url: str, redis: object, sink: Sink) -> None:
    settings = AlertsSettings(webhook_url=SecretStr(sink.url()))
    dispatcher = Dispatcher(settings, configured_sinks(settings))
    watcher = Watcher(dispatcher, settings.feed_stale_after_s)
    ends = await stream_ends(redis, FOLLOWED)  # type: ignore[arg-type]
    tasks = [
        asyncio.create_task(dispatcher.run()),
        asyncio.create_task(follow(redis, watcher, ends, 100)),  # type: ignore[arg-type]
    ]
    out = io.StringIO()
    supervisor = Supervisor(
        [ServiceSpec("broken", [sys.executable, "-c", "import sys; sys.exit(3)"])],
        FAST,
        Console(file=out, width=200, color_system=None),
        on_give_up=give_up_reporter(redis_url, BusSettings()),
    )
    running = asyncio.create_task(supervisor.run())
    try:
        async with asyncio.timeout(20):
            while not sink.received:
                sink.arrived.clear()
                await sink.arrived.wait()
        assert supervisor.services["broken"].state == "gave_up"
    finally:
        supervisor.stop()
        await running
        for task in tasks:
            task.cancel()
    [(_, alert)] = sink.received
    assert alert["kind"] == "service_gave_up" and alert["where"] == "broken", alert
    assert alert["why"].startswith("crash loop: exited 3 times") and "status 3" in alert["why"], alert
    assert "could not report" not in out.getvalue()


async def test_a_report_that_fails_is_said_and_the_supervisor_goes_on() -> None:
    async def unreachable(name: str, why: str) -> None:
        raise ConnectionError(f"no Redis for {name}")

    out = io.StringIO()
    supervisor = Supervisor(
        [ServiceSpec("broken", [sys.executable, "-c", "import sys; sys.exit(3)"])],
        FAST,
        Console(file=out, width=200, color_system=None),
        on_give_up=unreachable,
    )
    summary = await asyncio.wait_for(_until_given_up(supervisor), 20)
    assert summary["broken"]["state"] == "gave_up"
    assert "could not report the give-up: ConnectionError('no Redis for broken')" in out.getvalue()


async def _until_given_up(supervisor: Supervisor) -> dict[str, dict[str, object]]:
    running = asyncio.create_task(supervisor.run())
    while supervisor.services["broken"].state != "gave_up":
        await asyncio.sleep(0.05)
    supervisor.stop()
    return await running
