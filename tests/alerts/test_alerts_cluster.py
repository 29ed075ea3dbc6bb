"""The alerts service on a Redis Cluster: its followed streams sit in three hash slots, and a
multi-key XREAD across slots is refused, so it reads each slot apart. Checked against a real
3-master cluster: a message on each followed stream becomes an alert at a local webhook."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from redis.exceptions import ResponseError

from services.alerts.service import FOLLOWED, main, slot_reads
from shared.bus import RedisBus, connect_redis
from shared.config import BusSettings, Settings
from shared.schemas import PolicyUpdate, RiskEvent, Status, streams
from shared.sections.alerts import AlertsSettings
from tests.shared.redis_cluster import LocalCluster


def test_the_followed_streams_are_read_one_slot_at_a_time_on_a_cluster() -> None:
    ends = {name: f"{i}-0" for i, name in enumerate(FOLLOWED)}
    assert slot_reads(ends, cluster=False) == [ends]  # one XREAD on a single server
    reads = slot_reads(ends, cluster=True)
    assert sorted(name for read in reads for name in read) == sorted(FOLLOWED)
    assert len(reads) == 3 and all(read == {n: ends[n] for n in read} for read in reads)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    server = LocalCluster(tmp_path_factory.mktemp("cluster"))
    server.start()
    yield server
    server.stop()


@pytest.mark.integration
@pytest.mark.slow
async def test_the_alerts_service_alerts_from_every_followed_stream_on_a_cluster(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app)
    await server.start_server()
    redis = connect_redis(cluster.url, cluster=True)
    settings = Settings(
        redis_url=cluster.url,
        database_url=None,
        var_dir=tmp_path / "var",
        bus=BusSettings(cluster=True, block_ms=200),
        metrics={"enabled": False},
        alerts=AlertsSettings(webhook_url=SecretStr(str(server.make_url("/hook"))), feed_stale_after_s=0.5),
    )
    service = asyncio.create_task(main(settings))
    try:
        with pytest.raises(ResponseError, match="same slot"):  # what one XREAD over them gets
            await redis.xread(dict.fromkeys(FOLLOWED, "0-0"), block=10)  # type: ignore[arg-type]
        bus = RedisBus(redis, BusSettings())
        halt = RiskEvent("halt", time.time_ns(), "critical", "binance", None, {"reason": "cluster drill"})
        policy = PolicyUpdate("p-cluster", "ppo", "file:///p", time.time_ns(), markets=[("okx", "BTC/USDT")])
        kinds = {"halt", "policy_promoted", "feed_stale"}
        deadline = time.monotonic() + 30
        while not kinds <= {r["kind"] for r in received}:  # published again until seen: the service
            assert not service.done(), service  # starts reading at the streams' ends, repeats are deduplicated
            assert time.monotonic() < deadline, f"alerts received: {received}"
            await bus.publish_many(
                [
                    (streams.RISK_EVENTS, halt),
                    (streams.POLICY_UPDATES, policy),
                    (streams.MD_STATUS, Status("kraken", "stale", time.time_ns())),
                ]
            )
            await asyncio.sleep(0.2)
    finally:
        service.cancel()
        await asyncio.gather(service, return_exceptions=True)
        await redis.aclose()
        await server.close()
    by_kind = {r["kind"]: r for r in received}
    assert by_kind["halt"]["why"] == "cluster drill" and by_kind["halt"]["where"] == "binance"
    assert by_kind["policy_promoted"]["where"] == "okx:BTC/USDT" and by_kind["feed_stale"]["where"] == "kraken"
