"""`tradewind streams`: lengths, rates, pending, and lag computed without Redis 7's lag field."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from shared import monitor
from shared.bus import RedisBus
from shared.config import BusSettings
from shared.schemas import Trade

pytestmark = pytest.mark.integration


def trade(i: int) -> Trade:
    return Trade("binance", "BTC/USDT", str(i), 1.0, 1.0, "buy", i, i)


async def test_sample_reports_length_pending_idle_and_lag(redis, uid):
    stream = f"mon:{uid}"
    bus = RedisBus(redis, BusSettings())
    await bus.publish_many([(stream, trade(i)) for i in range(50)])
    await redis.xgroup_create(stream, "readers", id="0")
    await redis.xgroup_create(stream, "idle", id="$")  # created after the 50: nothing to read yet
    rows = await redis.xreadgroup("readers", "r1", {stream: ">"}, count=20)
    await redis.xack(stream, "readers", *[eid for eid, _ in rows[0][1][:5]])  # 15 stay pending
    await asyncio.sleep(0.05)
    await bus.publish_many([(stream, trade(i)) for i in range(50, 60)])

    infos = await monitor.sample(redis)
    info = infos[stream]
    assert info.length == 60 and info.entries_written == 60 and info.msgs_written == 60
    assert info.last_entry_age_s is not None and 0 <= info.last_entry_age_s < 5
    groups = {g.name: g for g in info.groups}
    assert groups["readers"].pending == 15
    assert groups["readers"].lag == 40  # 60 entries, 20 delivered
    assert groups["readers"].oldest_pending_idle_ms is not None and groups["readers"].oldest_pending_idle_ms >= 40
    assert groups["readers"].consumers == 1
    assert groups["idle"].lag == 10 and groups["idle"].pending == 0

    capped = (await monitor.sample(redis, lag_cap=7))[stream]
    assert {g.name: (g.lag, g.lag_capped) for g in capped.groups}["readers"] == (7, True)


async def test_rates_come_from_two_readings(redis, uid):
    stream = f"rate:{uid}"
    bus = RedisBus(redis, BusSettings())
    await bus.publish(stream, trade(0))
    before, at = await monitor.report(redis, interval=0.01)
    await bus.publish_many([(stream, [trade(i) for i in range(10)]) for _ in range(30)])
    await asyncio.sleep(0.2)
    after, _ = await monitor.report(redis, previous=before, previous_at=at)
    s = after[stream]
    assert s.entries_per_s is not None and s.msgs_per_s is not None
    assert s.msgs_per_s == pytest.approx(10 * s.entries_per_s)
    assert 30 / 10 < s.entries_per_s < 30 / 0.2 * 1.01


async def test_streams_command_prints_json_and_table(redis, redis_url, uid):
    stream = f"md:book:cli{uid}"  # ":book:" must not turn into an emoji
    await RedisBus(redis, BusSettings()).publish(stream, trade(1))
    await redis.xgroup_create(stream, "g", id="0")
    env = {**os.environ, "REDIS_URL": redis_url}
    out = subprocess.run([sys.executable, "-m", "shared", "streams", "--json", "--interval", "0.05"],
                         env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 0, out.stderr
    entry = next(s for s in json.loads(out.stdout) if s["name"] == stream)
    assert entry["length"] == 1 and entry["groups"][0]["lag"] == 1
    table = subprocess.run([sys.executable, "-m", "shared", "streams", "--interval", "0.05"],
                           env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert stream in table.stdout and "lag" in table.stdout


def test_streams_command_without_a_server_says_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["TRADEWIND_VAR_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-m", "shared", "streams"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "REDIS_URL" in out.stderr and "tradewind up" in out.stderr
