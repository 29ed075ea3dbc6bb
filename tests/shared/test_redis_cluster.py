"""The bus on a real 3-master Redis Cluster (TRADEWIND_BUS__CLUSTER): keys that must share a slot do,
streams spread over the nodes, a consumer reads streams on several nodes, XAUTOCLAIM, dead letters,
halts' WATCH/MULTI, `tradewind streams`' counters, and `tradewind up --mode replay` trading on it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from services.executor.store import PUBLISHED_MARKER
from shared import halts, monitor
from shared.bus import Consumer, Delivery, RedisBus, by_slot, connect_redis, is_cluster
from shared.config import BusSettings
from shared.schemas import RiskControl, Trade, decode, streams
from shared.sections.executor import ExecutorSettings
from shared.sections.risk import RiskSettings
from shared.signing import OPERATOR
from shared.stack import stream_counters
from tests.control import SIGNERS
from tests.shared import redis_cluster as local
from tests.shared.redis_cluster import LocalCluster


def slot(key: str) -> int:
    return key_slot(key.encode())


def test_keys_written_with_a_stream_share_its_slot_and_streams_spread() -> None:
    """The single-slot rule a cluster imposes on MULTI: dead letters, counters, halts, outbox markers."""
    for stream in (streams.md_trades("binance"), streams.md_book("okx"), streams.MD_STATUS, streams.ORDERS_EVENTS):
        assert slot(streams.dead_letter(stream)) == slot(stream) == slot(streams.stats_key(stream))
        assert streams.stats_stream(streams.stats_key(stream)) == stream
    assert streams.stats_stream(streams.dead_letter(streams.MD_STATUS)) is None
    assert slot(streams.HALTS) == slot(streams.RISK_CONTROL)
    assert slot(f"{PUBLISHED_MARKER}42") == slot(streams.ORDERS_EVENTS)
    md = [streams.md_trades(x) for x in ("binance", "okx", "bybit")] + [streams.md_book(x) for x in ("binance", "okx")]
    assert len({slot(s) for s in md}) == len(md)  # no hash tag on streams: each has its own slot
    grouped = by_slot([*md, streams.dead_letter(md[0])], cluster=True)
    assert grouped[0] == [md[0], streams.dead_letter(md[0])] and len(grouped) == len(md)
    assert by_slot(md, cluster=False) == [md]


@pytest.mark.integration
async def test_counters_per_stream_on_a_single_server(redis: Redis, redis_url: str, uid: str) -> None:
    """The same keys on one server: `tradewind up`'s summary and `tradewind streams` read them back."""
    a, b = f"t:{uid}:a", f"t:{uid}:b"
    await RedisBus(redis, BusSettings()).publish_many([(a, [trade("a", 1), trade("a", 2)]), (b, trade("b", 3))])
    counters = await stream_counters(redis_url)
    assert counters[a] == {"entries": 1, "msgs": 2} and counters[b] == {"entries": 1, "msgs": 1}
    assert not is_cluster(redis)
    infos = await monitor.sample(redis)
    assert (infos[a].entries_written, infos[a].msgs_written) == (1, 2)


@pytest.mark.integration
@pytest.mark.slow
def test_the_test_cluster_forms_on_new_ports_when_a_node_cannot_bind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI lost a run to a node that exited at start (its bus port, port + 10000, taken meanwhile)."""
    real_pick = local._free_cluster_ports
    first = real_pick(3)
    picks = iter([first])
    monkeypatch.setattr(local, "_free_cluster_ports", lambda n: next(picks, None) or real_pick(n))
    server = LocalCluster(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first[1] + local.BUS_OFFSET))
        taken.listen()
        server.start(timeout=30)
    try:
        assert set(server.ports).isdisjoint(first[1:2]) and len(server.ports) == 3
        assert "Address already in use" in (tmp_path / str(first[1]) / "redis.log").read_text()
        assert local._answers(server.ports[0], b"CLUSTER INFO\r\n", b"cluster_state:ok")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    server = LocalCluster(tmp_path_factory.mktemp("cluster"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(cluster: LocalCluster) -> AsyncIterator[Redis]:
    redis = connect_redis(cluster.url, cluster=True)
    yield redis
    await redis.aclose()


async def node_of(redis: Any, key: str) -> str:
    """The master that serves ``key`` ("host:port"), from the cluster's CLUSTER KEYSLOT and CLUSTER NODES."""
    own = int(await redis.cluster_keyslot(key))
    for address, node in (await redis.cluster_nodes()).items():
        if "master" in node["flags"] and any(int(r[0]) <= own <= int(r[-1]) for r in node["slots"]):
            return str(address)
    raise AssertionError(f"slot {own} of {key} is served by no master")


def trade(exchange: str, i: int) -> Trade:
    return Trade(exchange, "BTC/USDT", str(i), 100.0 + i, 0.5, "buy", i, i + 1)


async def until(what: str, check: Callable[[], bool | Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if await value if isinstance(value, Awaitable) else value:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.integration
@pytest.mark.slow
async def test_one_consumer_reads_streams_on_several_nodes_and_counts_show(
    cluster: LocalCluster, client: Redis, uid: str
) -> None:
    assert is_cluster(client)
    names = [f"md:trades:x{uid}{i}" for i in range(6)]
    nodes = {await node_of(client, s) for s in names}
    assert len(nodes) >= 2, "the test's streams must span nodes"
    settings = BusSettings(block_ms=50, claim_idle_ms=300, claim_interval_ms=100, max_deliveries=3)
    bus = RedisBus(client, settings)
    await bus.publish_many([(s, [trade(s, 1), trade(s, 2)]) for s in names])
    got: dict[str, list[str]] = {}

    async def handle(batch: list[Delivery]) -> None:
        for d in batch:
            got.setdefault(d.stream, []).extend(m.trade_id for m in d.messages)  # type: ignore[union-attr]

    consumer = Consumer(client, names, "g", handle, settings, name="c")
    task = asyncio.create_task(consumer.run())
    try:
        await until("every stream's entries", lambda: sum(map(len, got.values())) == 2 * len(names))
        await bus.publish(names[-1], trade(names[-1], 3))  # delivered while the other nodes' reads block
        await until("an entry published after the reads began", lambda: len(got.get(names[-1], [])) == 3)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
    assert {s: ids[:2] for s, ids in got.items()} == {s: ["1", "2"] for s in names}
    for s in names:
        assert (await client.xpending(s, "g"))["pending"] == 0
    infos = await monitor.sample(client)
    for s in names:  # every primary is scanned; counters come from each stream's own slot
        assert infos[s].msgs_written == (3 if s == names[-1] else 2) and infos[s].groups[0].lag == 0
    counters = await stream_counters(cluster.url, cluster=True)  # `tradewind up`'s summary
    assert counters[names[0]] == {"entries": 1, "msgs": 2}


@pytest.mark.integration
@pytest.mark.slow
async def test_xautoclaim_and_dead_letters_on_two_nodes(client: Redis, uid: str) -> None:
    """A consumer dies holding entries of streams on two nodes: another reclaims them (XAUTOCLAIM); one
    that always fails goes to its dead-letter stream in one MULTI with its XACK (same slot)."""
    a, b = f"t:{uid}:a", f"t:{uid}:b"
    while await node_of(client, b) == await node_of(client, a):
        b += "x"
    settings = BusSettings(block_ms=50, claim_idle_ms=300, claim_interval_ms=100, max_deliveries=2)
    bus = RedisBus(client, settings)
    await bus.publish_many([(a, trade("a", 1)), (b, trade("b", 2)), (b, trade("poison", 3))])
    held = asyncio.Event()

    async def hold(batch: list[Delivery]) -> None:
        held.set()
        await asyncio.Event().wait()  # never returns: the entries stay pending under this consumer

    first = Consumer(client, [a, b], "g", hold, settings, name="dies")
    dying = asyncio.create_task(first.run())
    await until("the first consumer holding a batch", held.is_set)
    dying.cancel()
    done: set[str] = set()  # a batch that fails is retried entry by entry: its good entries come twice

    async def handle(batch: list[Delivery]) -> None:
        for d in batch:
            for m in d.messages:
                if m.exchange == "poison":  # type: ignore[union-attr]
                    raise ValueError("poison")
                done.add(m.trade_id)  # type: ignore[union-attr]

    second = Consumer(client, [a, b], "g", handle, settings, name="takes-over")
    task = asyncio.create_task(second.run())
    try:
        await until("the reclaimed entries", lambda: done == {"1", "2"})
        await until("the dead letter", lambda: second.dead_lettered == 1)
    finally:
        second.stop()
        await asyncio.wait_for(task, 10)
    dead = await client.xrange(streams.dead_letter(b))
    assert len(dead) == 1 and dead[0][1][b"stream"] == b.encode() and b"poison" in dead[0][1][b"error"]
    assert [m.exchange for m in decode(dead[0][1][b"d"])] == ["poison"]  # type: ignore[union-attr]
    for s in (a, b):
        assert (await client.xpending(s, "g"))["pending"] == 0


@pytest.mark.integration
@pytest.mark.slow
async def test_halts_watch_and_multi_stay_in_one_slot(client: Redis, uid: str) -> None:
    control = RiskControl("halt", 1, reason=f"drill {uid}", exchange=f"x{uid}", issued_by="cli:ops", cause="")
    changes = await halts.send(client, [control], signer=SIGNERS[OPERATOR], maxlen=1000)
    assert changes[0].added
    assert f"human:x{uid}" in {h.id for h in await halts.load(client)}
    last = await client.xrevrange(streams.RISK_CONTROL, count=1)
    assert decode(last[0][1][b"d"])[0].reason == f"drill {uid}"  # type: ignore[union-attr]
    assert int((await client.hgetall(streams.stats_key(streams.RISK_CONTROL)))[b"msgs"]) >= 1


def tradewind(env: dict[str, str], *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "shared", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_stack(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`tradewind up --mode replay` with the services of the money path; its log in ``log``."""
    only = [a for s in ("ingest", "executor", "risk") for a in ("--only", s)]
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "shared", "up", "--mode", "replay", *only],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )


@pytest.mark.integration
@pytest.mark.slow
async def test_tradewind_up_replay_trades_on_a_redis_cluster(
    cluster: LocalCluster, client: Redis, tmp_path: Path
) -> None:
    """REDIS_URL at one node, TRADEWIND_BUS__CLUSTER=true: no embedded Redis, and the replay stack trades."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env |= {
        "REDIS_URL": cluster.url,
        "TRADEWIND_BUS__CLUSTER": "true",
        "TRADEWIND_VAR_DIR": str(tmp_path / "var"),
        "TRADEWIND_METRICS__ENABLED": "false",
    }
    up = start_stack(env, tmp_path / "up.log")
    db_url = tmp_path / "var" / "run" / "database.url"
    conn: asyncpg.Connection | None = None
    try:
        await until("the stack's database", db_url.exists, 120)
        assert not (tmp_path / "var" / "redis").exists(), "a REDIS_URL was given: no embedded Redis"
        conn = await asyncpg.connect(db_url.read_text().strip())

        async def filled() -> bool:
            assert up.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            assert conn is not None
            tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename = 'fills'")
            return bool(tables) and int(await conn.fetchval("SELECT count(*) FROM fills")) > 0

        await until("fills", filled, 240)
        assert int(tradewind(env, "status", "--json")["fills"]) > 0
        # the operator's controls: WATCH/MULTI on tw:halts:{risk:control} with its risk:control entry
        assert tradewind(env, "halt", "--reason", "drill")["action"] == "halt"
        assert tradewind(env, "resume", "--reason", "drill over")["halts"] == []
        shown = {s["name"]: s for s in tradewind(env, "streams", "--json", "--interval", "0.5")}
        md = [s for s in shown if s.startswith("md:") and shown[s]["length"]]  # some are only groups' (MKSTREAM)
        for s in (*md, streams.ORDERS_INTENTS, streams.ORDERS_EVENTS):  # counters from each stream's own slot
            assert shown[s]["msgs_written"] > 0 and shown[s]["msgs_per_s"] is not None, shown[s]
        # one consumer per service reads market data served by several nodes: the executor's, the risk service's
        for group in (ExecutorSettings().market_data_group, f"{RiskSettings().group}-md"):
            read = [s for s in md if group in {g["name"] for g in shown[s]["groups"]}]
            assert len({await node_of(client, s) for s in read}) >= 2, f"{group} reads one node only: {read}"
    finally:
        if conn is not None:
            await conn.close()
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
