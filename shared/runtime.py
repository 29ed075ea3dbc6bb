"""How a service process runs: settings, logging, metrics, signals, its servers — the same under
`tradewind up`, `python -m services.<name>`, `tradewind <name>` and compose."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from redis.asyncio import Redis

from shared.bus import RedisBus, connect_redis
from shared.config import ConfigError, Settings, load_settings
from shared.logs import setup_logging
from shared.metrics import ServiceMetrics
from shared.storage import Database

log = logging.getLogger(__name__)

ServiceMain = Callable[[Settings], Awaitable[None]]
Need = Literal["required", "optional", "unused"]
T = TypeVar("T")
URL_VARS = {"redis": "REDIS_URL", "database": "DATABASE_URL"}


def on_stop(callback: Callable[[], None]) -> None:
    """Call ``callback`` on SIGINT/SIGTERM instead of cancelling the service (for a graceful drain).

    A second signal still cancels: a stuck drain never blocks a shutdown.
    """
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def first() -> None:
        log.info("stop requested; finishing the work in flight")
        callback()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: main and main.cancel())

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, first)


def service_metrics(settings: Settings) -> ServiceMetrics:
    """Create the process's metrics and serve them if enabled."""
    metrics = ServiceMetrics(settings.service_name)
    if settings.metrics.enabled:
        try:
            port = metrics.serve(settings.metrics)
            log.info("metrics on http://%s:%d/metrics", settings.metrics.host, port)
        except OSError as exc:
            log.warning("metrics port %d unavailable (%s); metrics not served", settings.metrics.port, exc)
    return metrics


def run_service(name: str, main: ServiceMain, settings: Settings | None = None) -> int:
    """Run one service until it returns or is signalled; return the process exit status."""
    try:
        settings = settings or load_settings(service_name=name)
    except ConfigError as exc:
        print(f"tradewind {name}: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log, name)

    async def runner() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: task and task.cancel())
        await main(settings)

    try:
        asyncio.run(runner())
    except (asyncio.CancelledError, KeyboardInterrupt):
        log.info("%s stopped", name)
    except ConfigError as exc:  # a setting found wrong only once the service looked at it
        log.error("%s: %s", name, exc)
        return 2
    except TaskFailed as exc:  # already logged with its traceback where it was seen
        log.error("%s exits: %s", name, exc)
        return 1
    except Exception:
        log.exception("%s failed", name)
        return 1
    return 0


def running_url(settings: Settings, kind: Literal["redis", "database"]) -> str | None:
    """The URL of a configured server, else of the embedded one a running `tradewind up` started.

    `tradewind up` writes the embedded servers' URLs to ``<var_dir>/run/<kind>.url`` (shared.stack).
    """
    if kind == "redis" and settings.redis_url:
        return settings.redis_url
    if kind == "database" and settings.database_url:
        return settings.database_url.get_secret_value()
    path = settings.var_dir / "run" / f"{kind}.url"
    return path.read_text().strip() if path.exists() else None


def missing_urls(settings: Settings, kinds: list[str], *, looked_for_stack: bool, why: str = "") -> str:
    """One sentence for "these servers' URLs are not set", said the same by every service and command."""
    names = " and ".join(URL_VARS[k] for k in kinds)
    verb = "is" if len(kinds) == 1 else "are"
    why = f" ({why})" if why else ""
    if looked_for_stack:
        files = ", ".join(str(settings.var_dir / "run" / f"{k}.url") for k in kinds)
        return (
            f"{names} {verb} not set{why} and no running `tradewind up` was found (no {files});"
            f" set {names}, or TRADEWIND_VAR_DIR to the var dir of a running stack"
        )
    them = "it" if len(kinds) == 1 else "them"
    return f"{names} {verb} not set{why}; run it under `tradewind up` (which sets {them}) or set {them}"


@dataclass
class ServiceContext:
    """What a service's ``main`` runs on: its settings, Redis, bus, metrics and (if asked) database."""

    name: str
    settings: Settings
    redis: Redis
    bus: RedisBus
    metrics: ServiceMetrics
    db: Database | None

    @property
    def database(self) -> Database:
        """The database of a service that asked for one with ``database="required"``."""
        if self.db is None:
            raise RuntimeError(f"{self.name} runs without a database (service_context(database='required') gives one)")
        return self.db

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the first SIGINT/SIGTERM (a graceful drain); see `on_stop`."""
        on_stop(callback)


@contextlib.asynccontextmanager
async def service_context(
    settings: Settings,
    name: str,
    *,
    database: Need = "required",
    database_why: str = "",
    find_running: bool = False,
    migrate: bool = True,
) -> AsyncIterator[ServiceContext]:
    """Check the URLs, serve metrics, connect Redis and the database (migrated), and close them on exit.

    ``database``: ``required`` (no DATABASE_URL → SystemExit, ``database_why`` says why),
    ``optional`` (connected when set) or ``unused`` (never connected). ``find_running`` also takes
    the URLs of a running `tradewind up` (tools that run beside a stack, like the dashboard).
    Everything opened is closed in reverse order, whatever ends the service.
    """
    if find_running:
        redis_url, db_url = running_url(settings, "redis"), running_url(settings, "database")
    else:
        redis_url = settings.redis_url
        db_url = settings.database_url.get_secret_value() if settings.database_url else None
    missing = [k for k, url in (("redis", redis_url), ("database", db_url)) if not url]
    if database != "required":
        missing = [k for k in missing if k != "database"]
    if missing:
        why = database_why if "database" in missing else ""
        raise SystemExit(f"{name}: " + missing_urls(settings, missing, looked_for_stack=find_running, why=why))
    async with contextlib.AsyncExitStack() as stack:
        metrics = service_metrics(settings)
        stack.push_async_callback(asyncio.to_thread, metrics.close)
        redis = connect_redis(str(redis_url), cluster=settings.bus.cluster)
        stack.push_async_callback(redis.aclose)
        db = None
        if db_url and database != "unused":
            db = await Database.connect(db_url, settings.storage)
            stack.push_async_callback(db.close)
            if migrate:
                await db.migrate()
        yield ServiceContext(name, settings, redis, RedisBus(redis, settings.bus, metrics), metrics, db)


class TaskFailed(RuntimeError):
    """A background task of a service died while the service should be running: the service stops, non-zero."""


class ServiceTasks:
    """The background tasks of one service, watched so that none dies unnoticed.

    ``until(aw)`` awaits ``aw`` (usually the stop event) while watching every task started here: the
    first one that raises, is cancelled, or returns (unless started with ``may_finish``) cancels the
    others and raises ``TaskFailed`` from its error - `run_service` then logs it and exits 1, and the
    supervisor restarts the process. A stalled service is worse than a restarted one.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self._watched: dict[asyncio.Task[Any], bool] = {}  # task -> may finish
        self._changed = asyncio.Event()

    def start(self, coro: Coroutine[Any, Any, Any], name: str, *, may_finish: bool = False) -> asyncio.Task[Any]:
        """Run ``coro`` as a watched task."""
        return self.adopt(asyncio.create_task(coro, name=name), may_finish=may_finish)

    def adopt(self, task: asyncio.Task[Any], *, may_finish: bool = False) -> asyncio.Task[Any]:
        """Watch a task started elsewhere (e.g. ``Publisher.start()``)."""
        self._watched[task] = may_finish
        self._changed.set()
        return task

    @property
    def tasks(self) -> list[asyncio.Task[Any]]:
        return list(self._watched)

    async def until(self, aw: Awaitable[T]) -> T:
        """Await ``aw``; raise ``TaskFailed`` as soon as a watched task dies first."""
        waiter = asyncio.ensure_future(aw)
        try:
            while True:
                for task in [t for t in self._watched if t.done()]:
                    self._check(task, stopping=waiter.done())
                if waiter.done():
                    return waiter.result()
                self._changed.clear()
                changed = asyncio.ensure_future(self._changed.wait())  # a task started meanwhile is watched too
                try:
                    await asyncio.wait([waiter, changed, *self._watched], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
        finally:
            if not waiter.done():
                waiter.cancel()

    def _check(self, task: asyncio.Task[Any], *, stopping: bool) -> None:
        may_finish = self._watched.pop(task) or stopping  # ending with the service is no failure
        name = task.get_name()
        if task.cancelled():
            how, cause = "was cancelled", None
        elif (cause := task.exception()) is not None:
            how = f"failed: {cause!r}"
        elif may_finish:
            return
        else:
            how = "returned while the service was running"
        self.cancel()
        log.error("%s: background task %s %s; stopping the service", self.service, name, how, exc_info=cause)
        raise TaskFailed(f"{self.service}: background task {name} {how}") from cause

    def cancel(self) -> None:
        """Cancel every task still running."""
        for task in self._watched:
            task.cancel()

    async def wait(self, grace_s: float | None = None) -> None:
        """Wait for the tasks to end (they were asked to stop); cancel those still running after ``grace_s``."""
        tasks = list(self._watched)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
