"""The supervisor with real child processes: restart, crash loop, clean stop without orphans."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from rich.console import Console

from shared.config import SupervisorSettings
from shared.embedded import EmbeddedRedis
from shared.supervisor import ServerSpec, ServiceSpec, Supervisor

FAST = SupervisorSettings(
    restart_backoff_s=0.05,
    restart_backoff_max_s=0.2,
    crash_loop_restarts=3,
    crash_loop_window_s=30,
    stop_grace_s=2,
)


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def quiet_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, color_system=None), out


async def test_a_crashed_service_is_restarted(tmp_path: Path):
    marker = tmp_path / "crashed-once"
    code = f"""
import pathlib, time, sys
m = pathlib.Path({str(marker)!r})
if not m.exists():
    m.touch(); print("crashing", flush=True); sys.exit(7)
print("up", flush=True); time.sleep(60)
"""
    console, out = quiet_console()
    sup = Supervisor([ServiceSpec("flaky", py(code))], FAST, console)
    task = asyncio.create_task(sup.run())
    deadline = time.monotonic() + 10
    while "up" not in out.getvalue().split("| ")[-1]:
        assert time.monotonic() < deadline, out.getvalue()
        await asyncio.sleep(0.05)
    sup.stop()
    summary = await task
    assert summary["flaky"]["restarts"] == 1
    assert summary["flaky"]["state"] == "stopped"
    assert "exited with status 7; restarting" in out.getvalue()
    assert "flaky | crashing" in out.getvalue()  # output is prefixed with the service name


async def test_a_crash_looping_service_is_given_up_while_others_run():
    console, out = quiet_console()
    sup = Supervisor(
        [
            ServiceSpec("broken", py("import sys; sys.exit(3)")),
            ServiceSpec("fine", py("import time; time.sleep(60)")),
        ],
        FAST,
        console,
    )
    task = asyncio.create_task(sup.run())
    deadline = time.monotonic() + 10
    while sup.services["broken"].state != "gave_up":
        assert time.monotonic() < deadline, out.getvalue()
        await asyncio.sleep(0.05)
    assert sup.services["fine"].state == "running"
    sup.stop()
    summary = await task
    assert summary["broken"] == {"restarts": FAST.crash_loop_restarts, "exit_status": 3, "state": "gave_up"}
    assert "crash loop" in out.getvalue()
    assert "giving up" in out.getvalue()


async def test_stop_leaves_no_orphans_even_when_children_ignore_sigterm():
    # The service starts a grandchild and ignores SIGTERM: the stop must still reap the whole group.
    code = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print("grandchild", child.pid, flush=True)
time.sleep(120)
"""
    console, out = quiet_console()
    settings = FAST.model_copy(update={"stop_grace_s": 0.5})
    sup = Supervisor([ServiceSpec("stubborn", py(code))], settings, console)
    task = asyncio.create_task(sup.run())
    deadline = time.monotonic() + 10
    while "grandchild" not in out.getvalue():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    service_pid = sup.services["stubborn"].process.pid  # type: ignore[union-attr]
    grandchild = int(out.getvalue().split("grandchild")[1].split()[0])
    sup.stop()
    await asyncio.wait_for(task, 10)

    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 5  # SIGKILL was sent to the whole group; delivery is asynchronous
    while any(alive(pid) for pid in (service_pid, grandchild)):
        assert time.monotonic() < deadline, "a process of the service's group outlived the stop"
        await asyncio.sleep(0.05)


def test_duplicate_names_are_rejected():
    with pytest.raises(ValueError, match="unique"):
        Supervisor([ServiceSpec("a", ["x"]), ServiceSpec("a", ["y"])], FAST)


@pytest.mark.integration
def test_tradewind_up_stops_cleanly_on_ctrl_c(tmp_path: Path):
    """`tradewind up` with its embedded servers; SIGINT → JSON summary, servers gone, exit 0 — even when the
    signal comes while PostgreSQL is still starting (sent as soon as Redis is up)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["TRADEWIND_VAR_DIR"] = str(tmp_path / "var")
    env["TRADEWIND_METRICS__ENABLED"] = "false"
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared", "up", "--only", "no-such-service"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url_file = tmp_path / "var" / "run" / "redis.url"
    deadline = time.monotonic() + 60
    while not url_file.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert any("redis-server" in " ".join(c.cmdline()) for c in children)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["event"] == "summary" and summary["services"] == {}
    assert not url_file.exists()
    time.sleep(0.2)
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child
    postmaster = tmp_path / "var" / "postgres" / "postmaster.pid"
    assert not postmaster.exists(), "embedded PostgreSQL still running"


@pytest.mark.integration
async def test_a_killed_server_is_restarted_in_place_with_its_data(tmp_path: Path):
    """The embedded Redis under the supervisor: kill -9, back on the same port, AOF data kept."""
    import redis as redis_py

    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    client = redis_py.Redis.from_url(server.url)
    client.set("acked", "1")
    console, out = quiet_console()
    sup = Supervisor(
        [], FAST, console, servers=[ServerSpec("redis", server.start, server.alive, server.exit_description)]
    )
    task = asyncio.create_task(sup.run())
    try:
        first = server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 20
        # "back after" is said once start() returned, i.e. after the new server answered PING; a new
        # pid alone can be a process still loading its AOF (connection refused)
        while "redis | back after" not in out.getvalue():
            assert time.monotonic() < deadline, out.getvalue()
            await asyncio.sleep(0.05)
        # same port, same data: the AOF is written before Redis replies (fsynced each second, which
        # matters for a power cut, not for a kill of the process)
        assert server.pid != first
        assert await asyncio.to_thread(client.get, "acked") == b"1"
    finally:
        sup.stop()
        summary = await task
        client.close()
        server.stop()
    assert summary == {}  # no services
    assert sup.server_summary()["redis"]["restarts"] == 1
    assert "redis | exited with status -9; restarting" in out.getvalue()


async def test_a_server_that_will_not_start_again_is_given_up_under_the_same_rules():
    console, out = quiet_console()
    starts: list[float] = []

    def start() -> None:
        starts.append(time.monotonic())
        raise RuntimeError("port taken")

    sup = Supervisor([], FAST, console, servers=[ServerSpec("db", start, lambda: False, lambda: "is gone")])
    task = asyncio.create_task(sup.run())
    deadline = time.monotonic() + 10
    while sup.servers["db"].state != "gave_up":
        assert time.monotonic() < deadline, out.getvalue()
        await asyncio.sleep(0.05)
    sup.stop()
    await task
    assert len(starts) == FAST.crash_loop_restarts
    assert all(b - a >= FAST.restart_backoff_s * 0.9 for a, b in itertools.pairwise(starts))
    assert "restart failed: port taken" in out.getvalue() and "giving up" in out.getvalue()


def test_names_are_unique_across_services_and_servers():
    with pytest.raises(ValueError, match="unique"):
        Supervisor([ServiceSpec("redis", py("pass"))], FAST, servers=[ServerSpec("redis", lambda: None, lambda: True)])
