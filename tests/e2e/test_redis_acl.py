"""Redis ACL users per role on the embedded server (DESIGN, Safety): each role reaches its own keys,
a compromised ingest cannot place orders or halt, the dashboard cannot write, anonymous can only PING."""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ResponseError

from services.executor.store import PUBLISHED_MARKER
from shared.bus import Consumer, Delivery, RedisBus, connect_redis
from shared.config import BusSettings
from shared.embedded import OPERATOR, REDIS_ROLES, EmbeddedRedis, role_passwords
from shared.publisher import Publisher
from shared.schemas import Trade, streams

pytestmark = pytest.mark.integration

# What each service really does (shared/bus.py, services/*): these must work under its user.
ALLOWED: dict[str, list[tuple[object, ...]]] = {
    "ingest": [
        ("XADD", streams.md_trades("binance"), "*", "d", "x"),
        ("XADD", streams.md_book("binance"), "*", "d", "x"),
        ("XADD", streams.MD_STATUS, "*", "d", "x"),
        ("HINCRBY", streams.stats_key(streams.MD_STATUS), "entries", 1),
        ("XADD", streams.dead_letter(streams.md_trades("binance")), "*", "d", "x"),
    ],
    "executor": [
        ("XADD", streams.ORDERS_INTENTS, "*", "d", "x"),
        ("XADD", streams.ORDERS_EVENTS, "*", "d", "x"),
        ("XADD", streams.RISK_EVENTS, "*", "d", "x"),
        ("XADD", streams.RISK_CONTROL, "*", "d", "x"),
        ("HSET", streams.HALTS, "h", "x"),
        ("SET", "tw:executor:claim:c1", "run", "NX", "EX", 60),
        ("SET", f"{PUBLISHED_MARKER}1", "1"),
        ("XGROUP", "CREATE", streams.POLICY_UPDATES, "executor-policies", "$", "MKSTREAM"),
        ("XGROUP", "CREATE", streams.md_book("binance"), "executor", "$", "MKSTREAM"),
        ("HINCRBY", streams.stats_key(streams.ORDERS_EVENTS), "entries", 1),
    ],
    "risk": [
        ("XADD", streams.ORDERS_INTENTS, "*", "d", "x"),
        ("XADD", streams.RISK_EVENTS, "*", "d", "x"),
        ("XADD", streams.RISK_CONTROL, "*", "d", "x"),
        ("HSET", streams.HALTS, "h", "x"),
        ("SET", streams.RISK_STATE, "{}"),
        ("XGROUP", "CREATE", streams.ORDERS_EVENTS, "risk", "$", "MKSTREAM"),
        ("XADD", streams.dead_letter(streams.ORDERS_EVENTS), "*", "d", "x"),
    ],
    "trainer": [
        ("XADD", streams.POLICY_UPDATES, "*", "d", "x"),
        ("XGROUP", "CREATE", streams.md_trades("binance"), "trainer", "$", "MKSTREAM"),
        ("HINCRBY", streams.stats_key(streams.POLICY_UPDATES), "entries", 1),
    ],
    "dashboard": [
        ("XRANGE", streams.ORDERS_EVENTS, "-", "+", "COUNT", 1),
        ("HGETALL", streams.stats_key(streams.MD_STATUS)),
        ("SCAN", 0, "TYPE", "stream"),
        ("XINFO", "STREAM", streams.MD_STATUS),
        ("GET", streams.RISK_STATE),
        ("TIME",),  # the streams view measures ages on the server's clock
    ],
    OPERATOR: [
        ("XADD", streams.RISK_CONTROL, "*", "d", "x"),
        ("HSET", streams.HALTS, "h", "x"),
        ("HGETALL", streams.stats_key(streams.MD_STATUS)),
    ],
}
REFUSED: dict[str, list[tuple[object, ...]]] = {
    "ingest": [
        ("XADD", streams.ORDERS_INTENTS, "*", "d", "x"),
        ("XADD", streams.RISK_CONTROL, "*", "d", "x"),
        ("HSET", streams.HALTS, "h", "x"),
        ("SET", "tw:executor:claim:c1", "x"),
        ("XADD", streams.POLICY_UPDATES, "*", "d", "x"),
    ],
    "trainer": [("XADD", streams.ORDERS_INTENTS, "*", "d", "x"), ("XADD", streams.RISK_CONTROL, "*", "d", "x")],
    "executor": [("SET", streams.RISK_STATE, "{}")],
    "dashboard": [("XADD", streams.md_trades("binance"), "*", "d", "x"), ("HSET", streams.HALTS, "h", "x")],
    OPERATOR: [("FLUSHALL",), ("CONFIG", "GET", "*")],
    "default": [("GET", "x"), ("XADD", streams.ORDERS_INTENTS, "*", "d", "x")],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    directory = tmp_path_factory.mktemp("redis-acl")
    redis = EmbeddedRedis(directory, passwords=role_passwords(directory / "passwords"))
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
async def clients(server: EmbeddedRedis) -> AsyncIterator[dict[str, Redis]]:
    out = {role: connect_redis(server.user_url(role)) for role in REDIS_ROLES}
    out["default"] = connect_redis(server.url)
    yield out
    for client in out.values():
        await client.aclose()


def test_secrets_are_private_and_kept_per_var_dir(server: EmbeddedRedis) -> None:
    for name in ("passwords", "users.acl"):
        assert stat.S_IMODE((server.directory / name).stat().st_mode) == 0o600, name
    assert role_passwords(server.directory / "passwords") == server.passwords  # same on the next start
    assert server.passwords is not None and len(set(server.passwords.values())) == len(REDIS_ROLES)


@pytest.mark.parametrize("role", list(ALLOWED))
async def test_each_role_reaches_the_keys_its_service_uses(clients: dict[str, Redis], role: str) -> None:
    for command in ALLOWED[role]:
        try:
            await clients[role].execute_command(*command)
        except NoPermissionError as exc:
            pytest.fail(f"{role} was refused {command}: {exc}")
        except ResponseError as exc:
            assert "BUSYGROUP" in str(exc), (role, command, exc)


@pytest.mark.parametrize("role", list(REFUSED))
async def test_each_role_is_refused_what_is_not_its_own(clients: dict[str, Redis], role: str) -> None:
    for command in REFUSED[role]:
        with pytest.raises((NoPermissionError, ResponseError), match=r"NOPERM|NOAUTH|no permissions"):
            await clients[role].execute_command(*command)


async def test_the_ingest_user_cannot_place_an_order(clients: dict[str, Redis]) -> None:
    """The issue's check: XADD to orders:intents as ingest is NOPERM, and nothing was appended."""
    before = await clients[OPERATOR].xlen(streams.ORDERS_INTENTS)
    with pytest.raises(NoPermissionError, match="no permissions"):  # NOPERM; redis-py drops the code
        await clients["ingest"].xadd(streams.ORDERS_INTENTS, {"d": b"buy everything"})
    assert await clients[OPERATOR].xlen(streams.ORDERS_INTENTS) == before
    assert await clients["default"].ping()  # health checks still answer without a password


async def test_the_bus_runs_under_a_role_user(server: EmbeddedRedis) -> None:
    """The real Publisher and Consumer (group, read, ack, reclaim, dead letters) as the ingest user."""
    settings = BusSettings(block_ms=50, claim_idle_ms=200, claim_interval_ms=100, messages_per_entry=5)
    redis = connect_redis(server.user_url("ingest"))
    publisher = Publisher(RedisBus(redis, settings))
    publisher.start()
    got: list[str] = []

    async def handle(batch: list[Delivery]) -> None:
        got.extend(m.trade_id for d in batch for m in d.messages)  # type: ignore[union-attr]

    stream = streams.md_trades("acltest")
    consumer = Consumer(connect_redis(server.user_url("ingest")), [stream], "recorder", handle, settings, name="c")
    task = asyncio.create_task(consumer.run())
    try:
        for i in range(12):
            publisher.put_nowait(stream, Trade("acltest", "A/B", str(i), 1.0, 1.0, "buy", i, i))
        await publisher.flush()
        deadline = time.monotonic() + 20
        while len(got) < 12:
            assert time.monotonic() < deadline, f"consumer stuck with {len(got)} under the ingest user"
            assert not task.done(), task
            await asyncio.sleep(0.05)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
        await publisher.close()
        await redis.aclose()


async def test_the_dashboard_user_can_read_the_streams_view(clients: dict[str, Redis]) -> None:
    """What the dashboard's streams page runs (shared.monitor.sample), under its read-only user."""
    from shared import monitor

    await clients[OPERATOR].xadd(streams.MD_STATUS, {"d": b"x"})
    assert streams.MD_STATUS in await monitor.sample(clients["dashboard"])
