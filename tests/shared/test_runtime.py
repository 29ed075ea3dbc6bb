"""The service shell: URLs checked with one wording, servers connected and migrated, metrics served,
everything closed on the way out."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from shared.config import Settings
from shared.runtime import ServiceTasks, TaskFailed, running_url, service_context
from shared.stack import available_services, enabled_services


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


@pytest.mark.parametrize(
    ("urls", "database", "named"),
    [
        ({}, "required", "REDIS_URL and DATABASE_URL are not set"),
        ({"redis_url": "redis://127.0.0.1:1/0"}, "required", "DATABASE_URL is not set"),
        ({"database_url": "postgresql://127.0.0.1:1/x"}, "optional", "REDIS_URL is not set"),
        ({}, "unused", "REDIS_URL is not set"),
    ],
)
async def test_a_missing_url_stops_the_service_naming_the_variable(urls, database, named, tmp_path: Path):
    settings = Settings(var_dir=tmp_path, **urls)
    with pytest.raises(SystemExit, match=f"^svc: {named}") as raised:
        async with service_context(settings, "svc", database=database):
            pytest.fail("the service ran without its servers")
    assert "`tradewind up`" in str(raised.value.code)


async def test_a_required_database_can_say_why(tmp_path: Path):
    settings = Settings(var_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(SystemExit, match=r"^risk: DATABASE_URL is not set \(live needs it\)"):
        async with service_context(settings, "risk", database="required", database_why="live needs it"):
            pass


async def test_a_tool_beside_the_stack_says_where_it_looked(tmp_path: Path):
    settings = Settings(var_dir=tmp_path)
    with pytest.raises(SystemExit, match="REDIS_URL is not set and no running `tradewind up`") as raised:
        async with service_context(settings, "dashboard", database="optional", find_running=True):
            pass
    assert str(tmp_path / "run" / "redis.url") in str(raised.value.code)
    assert "TRADEWIND_VAR_DIR" in str(raised.value.code)


def test_running_urls_prefer_the_configured_servers(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "redis.url").write_text("redis://embedded:1/0\n")
    assert running_url(Settings(var_dir=tmp_path), "redis") == "redis://embedded:1/0"
    assert (
        running_url(Settings(var_dir=tmp_path, redis_url="redis://configured:2/0"), "redis") == "redis://configured:2/0"
    )
    assert running_url(Settings(var_dir=tmp_path), "database") is None


@pytest.mark.integration
async def test_the_shell_connects_migrates_serves_metrics_and_closes(redis_url: str, database_url: str):
    settings = Settings(redis_url=redis_url, database_url=database_url, metrics={"port": 0}, service_name="svc")
    async with service_context(settings, "svc") as svc:
        assert await svc.redis.ping()
        assert await svc.database.fetch("SELECT 1 FROM policies LIMIT 1") is not None  # migrated
        assert svc.bus.metrics is svc.metrics
        port = svc.metrics.port
        assert port
        svc.metrics.count_in("s", 3)
        assert 'tradewind_messages_in_total{service="svc",stream="s"} 3.0' in await asyncio.to_thread(scrape, port)
    with pytest.raises(urllib.error.URLError):  # the metrics port is closed with the service
        await asyncio.to_thread(scrape, port)
    assert svc.metrics.port is None


@pytest.mark.integration
async def test_an_optional_database_is_left_alone_when_unused(redis_url: str, database_url: str):
    settings = Settings(redis_url=redis_url, database_url=database_url, metrics={"enabled": False})
    async with service_context(settings, "svc", database="unused") as svc:
        assert svc.db is None
        with pytest.raises(RuntimeError, match="svc runs without a database"):
            svc.database  # noqa: B018


def test_the_stack_finds_the_dashboard_like_any_service():
    assert available_services() == ["ingest", "executor", "risk", "trainer", "dashboard", "alerts"]
    assert "dashboard" in enabled_services(Settings())
    assert "dashboard" not in enabled_services(Settings(dashboard={"enabled": False}))


@pytest.mark.parametrize("name", available_services())
def test_every_service_starts_through_the_shell(name: str):
    """So that each one serves /metrics (compose's healthcheck) and checks its URLs the same way."""
    source = (Path(__file__).parents[2] / "services" / name / "service.py").read_text()
    assert "service_context(" in source
    for by_hand in ("connect_redis(", "service_metrics(", "Database.connect("):
        assert by_hand not in source, f"services/{name}/service.py opens its own {by_hand[:-1]}"


async def test_a_dead_task_stops_the_others_and_says_which():
    tasks = ServiceTasks("svc")
    survivor = tasks.start(asyncio.Event().wait(), name="survivor")
    tasks.start(asyncio.sleep(0), name="oneshot", may_finish=True)

    async def die() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    tasks.start(die(), name="worker")
    with pytest.raises(TaskFailed, match="svc: background task worker failed: ValueError") as raised:
        await asyncio.wait_for(tasks.until(asyncio.Event().wait()), 10)
    assert isinstance(raised.value.__cause__, ValueError)
    await asyncio.wait_for(asyncio.gather(survivor, return_exceptions=True), 10)
    assert survivor.cancelled()


async def test_a_task_that_returns_while_the_service_runs_is_a_failure_too():
    tasks = ServiceTasks("svc")
    stop = asyncio.Event()
    tasks.start(asyncio.sleep(0), name="loop")
    with pytest.raises(TaskFailed, match="loop returned while the service was running"):
        await asyncio.wait_for(tasks.until(stop.wait()), 10)


async def test_until_returns_when_the_service_stops_and_its_tasks_end_on_wait():
    tasks = ServiceTasks("svc")
    stop = asyncio.Event()
    tasks.start(stop.wait(), name="worker")
    asyncio.get_running_loop().call_soon(stop.set)
    await asyncio.wait_for(tasks.until(stop.wait()), 10)
    await asyncio.wait_for(tasks.wait(5), 10)
    assert all(t.done() and not t.cancelled() for t in tasks.tasks)


def test_a_service_whose_writer_task_dies_exits_non_zero_at_once(tmp_path: Path):
    """Not a silent stall: the process ends with 1 and the error in its log, so the supervisor restarts it."""
    script = Path(__file__).parent / "dying_service.py"
    root = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "background task publisher failed: RuntimeError('a bug in the writer')" in done.stderr
