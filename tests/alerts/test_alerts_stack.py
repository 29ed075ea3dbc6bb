"""End to end: `tradewind halt` inside a running `tradewind up --mode replay` → the alerts service
POSTs the halt to a local webhook within seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_halt_in_a_running_stack_reaches_the_webhook(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app)
    await server.start_server()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env |= {
        "TRADEWIND_VAR_DIR": str(tmp_path / "var"),
        "TRADEWIND_METRICS__ENABLED": "false",
        "TRADEWIND_ALERTS__WEBHOOK_URL": str(server.make_url("/hook")),
    }
    only = [a for s in ("ingest", "executor", "risk", "alerts") for a in ("--only", s)]
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(  # noqa: ASYNC220 (started once; waited on with deadlines below)
            [sys.executable, "-m", "shared", "up", "--mode", "replay", *only],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while "alerts: following" not in log.read_text(errors="replace"):  # the service logs it once it reads
            assert up.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            await asyncio.sleep(0.2)
        halted = await _run(env, "halt", "--reason", "webhook drill")
        assert halted.returncode == 0, halted.stderr[-2000:]
        sent = time.monotonic()
        while not any(a.get("kind") == "halt" and a.get("why") == "webhook drill" for a in received):
            assert time.monotonic() - sent < 15, f"no halt alert within 15 s; received: {received}"
            await asyncio.sleep(0.1)
        alert = next(a for a in received if a.get("kind") == "halt")
        assert alert["what"] == "Trading halted by a human" and alert["where"] == "every venue"
        assert "risk.halted" in alert["done"]
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        await server.close()


async def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "shared", *args], env=env, capture_output=True, text=True, timeout=120
    )
