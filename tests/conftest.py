"""Shared fixtures: real Redis and PostgreSQL, embedded unless REDIS_URL / DATABASE_URL are set."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from shared.bus import connect_redis
from shared.config import BusSettings, StorageSettings
from shared.embedded import EmbeddedPostgres, EmbeddedRedis

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def embedded_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres | None]:
    if os.environ.get("DATABASE_URL"):
        yield None
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def database_url(embedded_postgres: EmbeddedPostgres | None) -> str:
    return os.environ["DATABASE_URL"] if embedded_postgres is None else embedded_postgres.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[object]:
    client = connect_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[object]:
    from shared.storage import Database

    database = await Database.connect(database_url, StorageSettings(retry_max_s=20))
    await database.migrate()
    yield database
    await database.close()


@pytest.fixture
def uid() -> str:
    """A unique suffix, so tests sharing one server never see each other's streams or rows."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def bus_settings() -> BusSettings:
    return BusSettings(block_ms=50, claim_idle_ms=300, claim_interval_ms=100, max_deliveries=3, batch_size=500)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture
async def isolated(database_url: str, redis_url: str, uid: str) -> AsyncIterator[tuple[str, str]]:
    """A PostgreSQL database and a flushed Redis logical database of the test's own: (dsn, redis url)."""
    name = f"tw_exec_{uid}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    rurl = with_redis_db(redis_url, 9)
    redis = connect_redis(rurl)
    await redis.flushdb()
    yield with_database(database_url, name), rurl
    await redis.flushdb()
    await redis.aclose()
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()
