"""Fixtures of the executor tests: a PostgreSQL database and a Redis logical database of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from shared.bus import connect_redis


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture
async def isolated(database_url: str, redis_url: str, uid: str) -> AsyncIterator[tuple[str, str]]:
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
