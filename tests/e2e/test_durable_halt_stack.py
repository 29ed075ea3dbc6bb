"""The kill switch in a running `tradewind up --mode replay`: a halt holds across a kill -9 of the
executor (the supervisor restarts it halted), and `tradewind resume` lets it trade again."""

from __future__ import annotations

import asyncio
import inspect
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

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def tradewind(env: dict[str, str], *args: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [sys.executable, "-m", "shared", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_stack(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`tradewind up --mode replay` with the services of the money path (the trainer only costs CPU here)."""
    only = [a for s in ("ingest", "executor", "risk") for a in ("--only", s)]
    return subprocess.Popen(
        [sys.executable, "-m", "shared", "up", "--mode", "replay", *only],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def executor_pid(up: subprocess.Popen[bytes]) -> int | None:
    for child in psutil.Process(up.pid).children(recursive=True):
        try:
            if "services.executor" in " ".join(child.cmdline()):
                return child.pid
        except psutil.NoSuchProcess:
            continue
    return None


async def until(what: str, check: Callable[[], bool | Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await _value(check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_halt_survives_kill_9_of_the_executor_inside_tradewind_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env |= {"TRADEWIND_VAR_DIR": str(tmp_path / "var"), "TRADEWIND_METRICS__ENABLED": "false"}
    env["TRADEWIND_SUPERVISOR__RESTART_BACKOFF_S"] = "0.2"
    up = start_stack(env)
    db_url = tmp_path / "var" / "run" / "database.url"
    conn: asyncpg.Connection | None = None
    try:
        await until("the stack's database", db_url.exists, 120)
        conn = await asyncpg.connect(db_url.read_text().strip())

        async def count(sql: str, *args: object) -> int:
            assert conn is not None
            return int(await conn.fetchval(sql, *args))

        migrated = "SELECT count(*) FROM pg_tables WHERE tablename = 'halts'"
        await until("the stack's migrations", lambda: _gt(count(migrated), 0), 60)
        fills = "SELECT count(*) FROM fills"
        await until("first fills", lambda: _gt(count(fills), 0), 180)

        assert tradewind(env, "halt", "--reason", "drill")["action"] == "halt"
        halted = "SELECT count(*) FROM orders WHERE reason = 'risk.halted' AND created_at > $1"
        since = await conn.fetchval("SELECT now()")
        await until("a rejection for the halt", lambda: _gt(count(halted, since), 0), 60)
        pid = executor_pid(up)
        assert pid is not None
        settled = await count(fills)  # orders accepted before the halt are done or cancelled by now

        os.kill(pid, signal.SIGKILL)
        await until("the restarted executor", lambda: executor_pid(up) not in (None, pid), 60)
        restarted = await conn.fetchval("SELECT now()")
        # the new process consumes intents and rejects them: it is running, and halted
        await until("rejections after the restart", lambda: _gt(count(halted, restarted), 2), 90)
        assert await count(fills) == settled, "a fill happened while halted"
        status = tradewind(env, "status", "--json")
        assert status["fills"] == settled
        assert sum(status["fills_by_strategy"].values()) == settled and "(none)" not in status["fills_by_strategy"]

        resumed = tradewind(env, "resume", "--reason", "drill over")
        assert resumed["halts"] == []
        await until("fills after the resume", lambda: _gt(count(fills), settled), 120)
    finally:
        if conn is not None:
            await conn.close()
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)


async def _gt(value: Awaitable[int], floor: int) -> bool:
    return await value > floor


async def _value(x: bool | Awaitable[bool]) -> bool:
    return await x if inspect.isawaitable(x) else x
