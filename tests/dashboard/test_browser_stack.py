"""The dashboard inside a running `tradewind up --mode replay`, in headless Chromium: every page renders
live data (the stream table, an equity chart whose last point is /api/equity's, orders with their
sides), no console error occurs, and the risk page's halt button halts (the next intent is rejected
``risk.halted``) and its resume button resumes (the next intent is accepted). Screenshots of every page
are kept under the pytest temp dir (``<tmp_path>/screenshots``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.dashboard.service import PAGES
from shared.bus import RedisBus, connect_redis
from shared.config import BusSettings
from shared.embedded import free_port
from shared.schemas import OrderIntent, streams
from tests.dashboard.browser import NO_BROWSER, Browser, browser_path

pytestmark = pytest.mark.integration  # not slow: `make test` runs it (issue 18); 41 s alone here, 64 s loaded
TOKEN = "stack-operator-token"


@pytest.fixture
def chromium() -> str:
    path = browser_path()
    if path is None:
        pytest.skip(NO_BROWSER)
    return path


async def until(what: str, check: Callable[[], Awaitable[Any]], timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}; stack log:\n" + _tail(log)
        await asyncio.sleep(0.2)
    return value


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def test_every_page_and_the_kill_switch_in_a_running_stack(chromium: str, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env |= {
        "TRADEWIND_VAR_DIR": str(tmp_path / "var"),
        "TRADEWIND_METRICS__ENABLED": "false",
        "TRADEWIND_DASHBOARD__PORT": str(port),
        "TRADEWIND_DASHBOARD__TOKEN": TOKEN,
        "TRADEWIND_DASHBOARD__EQUITY_INTERVAL_S": "1",
    }
    only = [a for s in ("ingest", "executor", "risk", "dashboard") for a in ("--only", s)]
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(  # noqa: ASYNC220 (started once; waited on with deadlines below)
            [sys.executable, "-m", "shared", "up", "--mode", "replay", *only],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    conn: asyncpg.Connection | None = None
    redis: Any = None
    try:
        run = tmp_path / "var" / "run"

        async def servers_up() -> bool:
            assert up.poll() is None, "tradewind up exited:\n" + _tail(log)
            return (run / "database.url").exists() and (run / "redis.url").exists()

        await until("the stack's servers", servers_up, 120, log)
        conn = await asyncpg.connect((run / "database.url").read_text().strip())
        redis = connect_redis((run / "redis.url").read_text().strip())

        async def count(sql: str, *args: object) -> int:
            assert conn is not None and up.poll() is None, "tradewind up exited:\n" + _tail(log)
            try:
                return int(await conn.fetchval(sql, *args))
            except asyncpg.UndefinedTableError:  # migrations still running
                return 0

        await until("the dashboard", lambda: asyncio.to_thread(_healthy, base + "/healthz"), 120, log)
        await until("orders of both sides", lambda: count("SELECT count(DISTINCT side) FROM orders"), 180, log)
        await until("a recorded equity point", lambda: count("SELECT count(*) FROM equity_snapshots"), 60, log)
        venue, symbol = await conn.fetchrow("SELECT exchange, symbol FROM orders ORDER BY created_at LIMIT 1")

        async with Browser(chromium, tmp_path / "profile") as page:
            await page.goto(base + "/overview")  # redirected to the login form
            await page.until("!!document.getElementById('token')", 10, "the login form")
            await page.eval(f"document.getElementById('token').value = '{TOKEN}'")
            await page.eval("document.querySelector('#login button').click()")
            await page.until("document.body.dataset.page === 'overview' && tw.charts.equity", 20, "the equity chart")
            # the chart follows the recorder live: wait until its last point is the one /api/equity has now
            await page.until(
                "fetch('/api/equity').then(r => r.json()).then(a => { const d = tw.charts.equity.plot.data;"
                " const s = a.series['*'], n = d[0].length - 1;"
                " return n >= 0 && d[0][n] === a.t[a.t.length - 1] && d[1][n] === s[s.length - 1]; })",
                15,
                "the equity chart's last point to equal /api/equity's",
            )
            assert await page.eval("document.getElementById('risk-status').textContent") == "running"
            await page.screenshot(shots / "overview.png")

            await page.goto(base + "/bus")
            await page.until("document.querySelectorAll('#streams tr').length > 2", 20, "the stream table")
            shown = await page.eval("document.getElementById('streams').textContent")
            assert streams.ORDERS_INTENTS in shown and streams.ORDERS_EVENTS in shown, shown
            await page.screenshot(shots / "bus.png")

            await page.goto(base + "/strategies")
            sides = await page.until(
                "(() => { const s = [...document.querySelectorAll('#orders td.buy, #orders td.sell')]"
                ".map(td => td.textContent); return s.length > 0 && s; })()",
                20,
                "orders with their sides",
            )
            assert set(sides) <= {"buy", "sell"}
            await page.screenshot(shots / "strategies.png")

            for name in PAGES:
                if name in ("overview", "bus", "strategies", "risk"):
                    continue
                await page.goto(f"{base}/{name}")
                rendered = f"location.pathname === '/{name}' && document.body.dataset.rendered === '1'"
                await page.until(rendered, 20, f"the {name} page's data")
                await page.screenshot(shots / f"{name}.png")

            bus = RedisBus(redis, BusSettings())

            async def intent_result(client_order_id: str) -> tuple[str, str | None]:
                """Publish one intent; wait for the executor's record of it: (status, reason)."""
                intent = OrderIntent(
                    client_order_id, venue, symbol, "buy", "market", 0.0001, time.time_ns(), strategy="drill"
                )
                await bus.publish(streams.ORDERS_INTENTS, intent)
                sql = "SELECT status, reason FROM orders WHERE client_order_id = $1 AND status <> 'submitted'"
                assert conn is not None
                row = await until(
                    f"the answer to {client_order_id}", lambda: conn.fetchrow(sql, client_order_id), 30, log
                )
                return row["status"], row["reason"]

            await page.goto(base + "/risk")
            await page.until("location.pathname === '/risk' && document.body.dataset.rendered === '1'", 20, "risk")
            await page.eval(f"document.getElementById('op-token').value = '{TOKEN}'")
            await page.eval("document.getElementById('op-reason').value = 'browser drill'")
            await page.eval("document.getElementById('halt').click()")
            answer = "document.getElementById('op-result')"
            await page.until(f"{answer}.dataset.status", 30, "the dashboard's answer to the halt")
            assert await page.eval(f"{answer}.dataset.status") == "200", await page.eval(f"{answer}.textContent")
            said = await page.eval(f"{answer}.textContent")  # the executor and risk have it in force
            assert "confirmed by: executor-control, risk-control" in said and "NOT confirmed" not in said, said
            await page.until("document.getElementById('risk-status').textContent === 'HALTED'", 15, "HALTED shown")
            await page.screenshot(shots / "risk-halted.png")
            assert await intent_result(f"drill-halted-{uuid.uuid4().hex[:8]}") == ("rejected", "risk.halted")

            await page.eval("document.getElementById('resume').click()")
            await page.until("/halts now: none/.test(document.getElementById('op-result').textContent)", 15, "resume")
            await page.until("document.getElementById('risk-status').textContent === 'running'", 15, "running shown")
            await page.screenshot(shots / "risk.png")

            async def venue_free() -> bool:
                raw = await redis.get(streams.RISK_STATE)
                state = json.loads(raw) if raw else {}
                return not state.get("venues", {}).get(venue, {}).get("halted")

            deadline = time.monotonic() + 90
            while True:  # the replay's venues close and reconnect: risk halts one for its feed now and then
                status, reason = await intent_result(f"drill-resumed-{uuid.uuid4().hex[:8]}")
                assert reason != "risk.halted", (status, reason)  # the operator's halt is gone
                if reason != "risk.venue_halted" or time.monotonic() > deadline:
                    break
                await until(f"{venue}'s feed halt to lift", venue_free, 60, log)
            assert status in ("accepted", "partially_filled", "filled"), (status, reason)
            assert page.errors == [], page.errors
    finally:
        if redis is not None:
            await redis.aclose()
        if conn is not None:
            await conn.close()
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
