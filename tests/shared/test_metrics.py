"""Prometheus metrics: served over HTTP, fed by the bus."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest

from shared.bus import Consumer, Delivery, RedisBus
from shared.config import MetricsSettings
from shared.metrics import ServiceMetrics
from shared.schemas import Trade


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


@pytest.mark.integration
async def test_bus_traffic_shows_in_the_served_metrics(redis, uid, bus_settings):
    metrics = ServiceMetrics("unit")
    port = metrics.serve(MetricsSettings(port=0))
    stream = f"m:{uid}"
    bus = RedisBus(redis, bus_settings, metrics)
    await bus.publish(stream, [Trade("x", "A/B", str(i), 1.0, 1.0, "buy", i, i) for i in range(7)])
    await redis.xadd(stream, {"d": b"garbage"})
    done = asyncio.Event()

    async def handle(batch: list[Delivery]) -> None:
        done.set()

    consumer = Consumer(redis, [stream], "g", handle, bus_settings, name="m", metrics=metrics)
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(done.wait(), 10)
    consumer.stop()
    await task
    text = await asyncio.to_thread(scrape, port)
    assert f'tradewind_messages_out_total{{service="unit",stream="{stream}"}} 7.0' in text
    assert f'tradewind_messages_in_total{{service="unit",stream="{stream}"}} 7.0' in text
    assert 'tradewind_errors_total{kind="dead_letter",service="unit"} 1.0' in text
    assert f'tradewind_processing_seconds_count{{service="unit",stream="{stream}"}} 1.0' in text


def test_each_service_has_its_own_registry():
    a, b = ServiceMetrics("a"), ServiceMetrics("b")
    a.error("x")
    assert b.registry.get_sample_value("tradewind_errors_total", {"service": "a", "kind": "x"}) is None
    assert a.registry.get_sample_value("tradewind_errors_total", {"service": "a", "kind": "x"}) == 1.0
