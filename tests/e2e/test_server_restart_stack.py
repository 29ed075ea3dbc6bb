"""`make run` survives its own servers (issue 13): inside `tradewind up --mode replay` (embedded
Redis with an append-only file and one ACL user per service), kill -9 the embedded Redis, then the
embedded PostgreSQL: each comes back on its own, trading goes on after each, nothing Redis
acknowledged before the kill is gone, and the run ends with exit 0 and a summary counting the streams."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import psutil
import pytest
from redis.asyncio import Redis

from shared.schemas import streams

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Wait for ``check`` with a deadline; return the seconds it took."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout, f"timed out after {timeout:g}s waiting for {what}"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def start_stack(env: dict[str, str], tmp_path: Path) -> subprocess.Popen[bytes]:
    """`tradewind up --mode replay` with the services of the money path; its output in tmp_path/up.{out,err}."""
    only = [a for s in ("ingest", "executor", "risk") for a in ("--only", s)]
    with (tmp_path / "up.out").open("wb") as out, (tmp_path / "up.err").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "shared", "up", "--mode", "replay", *only],
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def redis_server_pid(up: subprocess.Popen[bytes]) -> int | None:
    for child in psutil.Process(up.pid).children(recursive=True):
        try:
            if "redis-server" in child.name() and child.status() != psutil.STATUS_ZOMBIE:
                return child.pid
        except psutil.NoSuchProcess:
            continue
    return None


def postmaster_pid(var: Path) -> int | None:
    try:
        return int((var / "postgres" / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


async def test_kill_9_of_embedded_redis_then_postgres_inside_tradewind_up(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env |= {"TRADEWIND_VAR_DIR": str(var), "TRADEWIND_METRICS__ENABLED": "false"}
    env["TRADEWIND_SUPERVISOR__RESTART_BACKOFF_S"] = "0.2"
    up = start_stack(env, tmp_path)
    figures: dict[str, object] = {}
    redis: Redis | None = None
    try:
        run = var / "run"
        await until("the stack's servers", _true(lambda: (run / "database.url").exists()), 120)
        db_url = (run / "database.url").read_text().strip()
        redis = Redis.from_url((run / "redis.url").read_text().strip())  # the operator's user

        async def fills() -> int:
            try:
                conn = await asyncpg.connect(db_url, timeout=5)
            except (OSError, asyncpg.PostgresError):
                return -1  # PostgreSQL is down: not a number yet
            try:
                return int(await conn.fetchval("SELECT count(*) FROM fills"))
            except asyncpg.PostgresError:
                return -1
            finally:
                await conn.close()

        async def redis_up() -> bool:
            try:
                return bool(await redis.ping())
            except Exception:
                return False

        async def more_fills_than(n: int) -> bool:
            return await fills() > n

        await until("first fills", lambda: more_fills_than(0), 240)

        # -- kill -9 the embedded Redis --------------------------------------------------------------
        pid = redis_server_pid(up)
        assert pid is not None
        last = await redis.xrevrange(streams.ORDERS_EVENTS, count=1)
        assert last, "orders:events is empty with fills in the database"
        acked_id = bytes(last[0][0])  # acknowledged by Redis before the kill
        before = await fills()
        figures["fills_before_redis_kill"] = before
        os.kill(pid, signal.SIGKILL)

        async def redis_back() -> bool:
            return redis_server_pid(up) not in (None, pid) and await redis_up()

        figures["redis_back_s"] = round(await until("Redis back", redis_back, 60), 2)
        assert await redis.xrange(streams.ORDERS_EVENTS, min=acked_id, max=acked_id), "an acknowledged entry was lost"
        figures["fills_after_redis_s"] = round(
            await until("fills after the Redis kill", lambda: more_fills_than(before), 180), 2
        )

        # -- kill -9 the embedded PostgreSQL (the postmaster) ------------------------------------------
        pg = postmaster_pid(var)
        assert pg is not None and psutil.pid_exists(pg)
        before = await fills()
        figures["fills_before_postgres_kill"] = before
        os.kill(pg, signal.SIGKILL)

        async def postgres_back() -> bool:
            return postmaster_pid(var) not in (None, pg) and await fills() >= 0

        figures["postgres_back_s"] = round(await until("PostgreSQL back", postgres_back, 120), 2)
        figures["fills_after_postgres_s"] = round(
            await until("fills after the PostgreSQL kill", lambda: more_fills_than(before), 180), 2
        )
        figures["fills_at_end"] = await fills()
    finally:
        if redis is not None:
            await redis.aclose()
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        print(json.dumps(figures))
    tail = (tmp_path / "up.err").read_text(errors="replace")[-4000:]
    assert up.returncode == 0, tail
    summary = json.loads((tmp_path / "up.out").read_text().strip().splitlines()[-1])
    # one kill each; a restart attempt that fails (PostgreSQL still recovering) counts as another
    assert summary["servers"]["redis"]["restarts"] >= 1, summary["servers"]
    assert summary["servers"]["postgres"]["restarts"] >= 1, summary["servers"]
    assert all(s["state"] == "stopped" for s in summary["servers"].values()), summary["servers"]
    assert all(s["state"] == "stopped" for s in summary["services"].values()), summary["services"]
    counted = summary["streams"]
    for stream in (streams.ORDERS_INTENTS, streams.ORDERS_EVENTS):
        assert counted.get(stream, {}).get("entries", 0) > 0, (stream, counted)
    assert any(s.startswith("md:trades:") and c.get("entries", 0) > 0 for s, c in counted.items()), counted
    print(json.dumps({"services": summary["services"], "servers": summary["servers"]}))


def _true(f: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return f()

    return check
