"""PostgreSQL access: an asyncpg pool that survives server restarts, and the migration runner."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TypeVar

import asyncpg

from shared.config import StorageSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

TIME_SERIES_TABLES = ("trades", "book_snapshots", "fills", "risk_events")

# Errors after which the same statement may succeed once the server is back.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # the pool resetting a connection the server dropped mid-statement ("cannot switch to state 15; another
    # operation (2) is in progress"): the pool terminates that connection, a new try gets a new one
    asyncpg.exceptions.InternalClientError,
)


# Errors that abort one transaction of two that conflict (PostgreSQL picks the victim): run it again.
CONFLICT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)
CONFLICT_TRIES = 5


class StorageUnavailable(RuntimeError):
    """PostgreSQL stayed unreachable for longer than ``storage.retry_max_s``."""


async def retrying(
    operation: Callable[[], Awaitable[T]],
    what: str,
    retry_max_s: float,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Run ``operation`` until it succeeds, backing off on connection errors, for up to ``retry_max_s``;
    run it again at once when PostgreSQL aborted it as a deadlock's victim (up to ``CONFLICT_TRIES`` times)."""
    deadline = time.monotonic() + retry_max_s
    delay = 0.05
    conflicts = 0
    while True:
        try:
            return await operation()
        except CONFLICT_ERRORS as exc:
            conflicts += 1
            if conflicts >= CONFLICT_TRIES:
                raise
            log.warning("%s aborted by a conflicting transaction (%r); running it again", what, exc)
        except TRANSIENT_ERRORS as exc:
            if time.monotonic() + delay > deadline:
                raise StorageUnavailable(f"{what}: PostgreSQL unreachable for {retry_max_s}s ({exc!r})") from exc
            log.warning("%s failed (%r); retrying in %.2fs", what, exc, delay)
            if on_retry:
                on_retry()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


class Database:
    """An asyncpg pool plus the operations every service needs: migrate, retrying execute."""

    def __init__(self, pool: asyncpg.Pool, settings: StorageSettings) -> None:
        self.pool = pool
        self.settings = settings

    @classmethod
    async def connect(cls, dsn: str, settings: StorageSettings, timeout_s: float | None = None) -> Database:
        """Open the pool; ``timeout_s`` (CLI commands) bounds connecting and every query, and tries once."""

        async def make() -> asyncpg.Pool:
            return await asyncpg.create_pool(
                dsn,
                min_size=settings.pool_min,
                max_size=settings.pool_max,
                command_timeout=timeout_s or 60,
                timeout=timeout_s or 60,
            )

        if timeout_s is not None:
            return cls(await make(), settings)
        pool = await retrying(make, "connect to PostgreSQL", settings.retry_max_s)
        return cls(pool, settings)

    async def close(self) -> None:
        await self.pool.close()

    async def execute(self, sql: str, *args: object) -> str:
        async def run() -> str:
            async with self.pool.acquire() as conn:
                return str(await conn.execute(sql, *args))

        return await retrying(run, "execute", self.settings.retry_max_s)

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:
                return list(await conn.fetch(sql, *args))

        return await retrying(run, "fetch", self.settings.retry_max_s)

    async def migrate(self) -> list[str]:
        """Apply the repository's migrations not yet applied; return the names applied now."""
        return await retrying(self._migrate, "migrate", self.settings.retry_max_s)

    async def _migrate(self) -> list[str]:
        applied_now = []
        async with self.pool.acquire() as conn, conn.transaction():
            # One migrator at a time when several services start together.
            await conn.execute("SELECT pg_advisory_xact_lock(7245361)")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for name, sql in migrations():
                if name in done:
                    continue
                log.info("applying migration %s", name)
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                applied_now.append(name)
            for table in TIME_SERIES_TABLES:
                await conn.execute(
                    "SELECT tradewind_ensure_partitions($1, now() - interval '1 month', now() + interval '3 months')",
                    table,
                )
        return applied_now


def migrations() -> list[tuple[str, str]]:
    """The SQL migrations shipped in ``shared/storage/migrations``, in name order."""
    folder = resources.files("shared.storage").joinpath("migrations")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name, f.read_text()) for f in files]
