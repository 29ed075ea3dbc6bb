"""The one-hop order path: in-process strategy intents are journaled to ``orders:intents`` in the claim's
round trip and executed at once; the intents consumer never executes them again, and a kill -9 between
journal and submit is recovered by the next run exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from services.executor.gateway import PaperGateway
from services.executor.order_path import CLAIM_KEY
from services.executor.service import Executor
from shared.bus import connect_redis
from shared.config import Settings
from shared.paper import PaperExchange
from shared.paper.recorded import read_binance_capture
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, decode, encode, streams
from shared.storage import Database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests" / "data" / "executor" / "binance_btcusdt_20240809_20s.gz"
KEY = ("binance", "BTC/USDT")
FIRST = next(m for m in read_binance_capture(CAPTURE) if isinstance(m, BookUpdate))
# every book update moves the touch: with lookback 2, threshold 0 and no cooldown each one is a signal
STRATEGY = {
    "strategy_enabled": True,
    "strategy_lookback": 2,
    "strategy_threshold_bps": 0.0,
    "strategy_cooldown_s": 0.0,
    "strategy_notional": 20.0,
    "market_data_venues": ["binance"],
}


def moving_book(i: int) -> BookUpdate:
    shift, now = (0.01 if i % 2 else -0.01), time.time_ns()
    bid, ask = FIRST.bids[0][0] + shift, FIRST.asks[0][0] + shift
    return BookUpdate("binance", "BTC/USDT", i + 1, now, now, [(bid, 1.0)], [(ask, 1.0)], snapshot=True)


async def until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


async def journal(redis) -> list[OrderIntent]:  # type: ignore[no-untyped-def]
    out: list[OrderIntent] = []
    for _, fields in await redis.xrange(streams.ORDERS_INTENTS):
        out += [m for m in decode(fields[streams.FIELD.encode()]) if isinstance(m, OrderIntent)]
    return out


async def filled_events(redis) -> Counter[str]:  # type: ignore[no-untyped-def]
    events: list[OrderEvent] = []
    for _, fields in await redis.xrange(streams.ORDERS_EVENTS):
        events += [m for m in decode(fields[streams.FIELD.encode()]) if isinstance(m, OrderEvent)]
    return Counter(e.client_order_id for e in events if e.status == "filled")


async def consumer_caught_up(redis, group: str) -> bool:  # type: ignore[no-untyped-def]
    """The intents group has read every entry of orders:intents and acked it."""
    last = await redis.xrevrange(streams.ORDERS_INTENTS, count=1)
    for g in await redis.xinfo_groups(streams.ORDERS_INTENTS):
        if g["name"] in (group, group.encode()):
            delivered = g["last-delivered-id"]
            return bool(last) and g["pending"] == 0 and delivered == last[0][0]
    return False


class CountingGateway(PaperGateway):
    """The paper venue, counting what reaches it per client order id."""

    def __init__(self, exchange: PaperExchange) -> None:
        super().__init__(exchange)
        self.sent: Counter[str] = Counter()

    async def submit(self, intent: OrderIntent) -> None:
        self.sent[intent.client_order_id] += 1
        await super().submit(intent)


async def test_strategy_intents_are_journaled_executed_once_and_never_again_by_the_consumer(
    isolated: tuple[str, str],
) -> None:
    dsn, rurl = isolated
    redis = connect_redis(rurl)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    settings = Settings(
        mode="replay",
        bus={"block_ms": 50, "claim_idle_ms": 1000, "claim_interval_ms": 200},
        executor=STRATEGY,
        risk={"limits": {"orders_per_s": 100_000.0, "order_burst": 1_000}},
    )
    gateway = CountingGateway(PaperExchange(settings.executor.venues, seed=1, id_prefix="H-"))
    executor = Executor(settings, redis, db, gateway, run_id="hop")
    task = asyncio.create_task(executor.run())
    group = settings.executor.group
    try:
        await asyncio.wait_for(executor.ready.wait(), 20)
        for i in range(20):  # one at a time: each book moves the mid
            book = moving_book(i)
            await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(book)})
            mid = (book.bids[0][0] + book.asks[0][0]) / 2

            async def applied(mid: float = mid) -> bool:
                return abs(executor.guard.mids.get(KEY, 0.0) - mid) < 1e-6

            await until(applied, 10, f"book {i}")

        async def settled() -> bool:
            return await consumer_caught_up(redis, group) and len(await filled_events(redis)) >= len(gateway.sent)

        await until(settled, 15, "the consumer to read the journal and the fills to be published")
        journaled = await journal(redis)
        cids = Counter(i.client_order_id for i in journaled)
        assert len(gateway.sent) >= 8 and all(i.strategy == "momentum" for i in journaled)
        assert cids == Counter(gateway.sent.keys()), "every executed intent is journaled, once"
        assert set(gateway.sent.values()) == {1}, "the consumer executed a journaled intent again"
        assert len(executor.submit_latency_ns) == len(gateway.sent)
        assert not executor.orders._direct, "every journaled intent was seen by the consumer"
        assert [await redis.get(f"{CLAIM_KEY}{cid}") for cid in cids] == [b"hop"] * len(cids)

        # the journal delivered again (as a restarted run, or a second reader, would see it): nothing new runs
        for intent in journaled:
            await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(intent)})
        await until(lambda: consumer_caught_up(redis, group), 15, "the consumer to read the duplicates")
        assert set(gateway.sent.values()) == {1}
        assert set((await filled_events(redis)).values()) == {1}
        assert len(await db.fetch("SELECT client_order_id FROM orders")) == len(cids)
    finally:
        executor.stop()
        await task
        await db.close()
        await redis.aclose()


class HangingNetworkGateway(PaperGateway):
    """A venue across the network whose order endpoint hangs until released."""

    in_process = False

    def __init__(self, exchange: PaperExchange) -> None:
        super().__init__(exchange)
        self.release = asyncio.Event()
        self.waiting: list[str] = []

    async def submit(self, intent: OrderIntent) -> None:
        self.waiting.append(intent.client_order_id)
        await self.release.wait()
        await super().submit(intent)


async def test_market_data_never_waits_on_a_network_venue(isolated: tuple[str, str]) -> None:
    """With a venue across the network the strategies' intents keep the stream hop: while its order
    endpoint hangs, book updates are still applied (they would queue behind it on the direct path)."""
    dsn, rurl = isolated
    redis = connect_redis(rurl)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    settings = Settings(
        mode="replay",
        bus={"block_ms": 50, "claim_idle_ms": 1000, "claim_interval_ms": 200},
        executor=STRATEGY,
        risk={"limits": {"orders_per_s": 100_000.0, "order_burst": 1_000}},
    )
    gateway = HangingNetworkGateway(PaperExchange(settings.executor.venues, seed=1, id_prefix="N-"))
    executor = Executor(settings, redis, db, gateway, run_id="net")
    task = asyncio.create_task(executor.run())
    try:
        await asyncio.wait_for(executor.ready.wait(), 20)
        for i in range(6):
            book = moving_book(i)
            await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(book)})
            mid = (book.bids[0][0] + book.asks[0][0]) / 2

            async def applied(mid: float = mid) -> bool:
                return abs(executor.guard.mids.get(KEY, 0.0) - mid) < 1e-6

            await until(applied, 10, f"book {i} while the venue hangs")
        assert gateway.waiting, "no order reached the hanging venue"
        assert not executor.orders._direct, "the direct path was used for a network venue"
        gateway.release.set()
        await until(lambda: _true(len(executor.submit_latency_ns) >= len(gateway.waiting)), 10, "the orders")
    finally:
        gateway.release.set()
        executor.stop()
        await task
        await db.close()
        await redis.aclose()


async def _true(value: bool) -> bool:
    return value


def start(module: str, db_url: str, redis_url: str, log: Path, strategy: bool) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRADEWIND_")},
        "REDIS_URL": redis_url,
        "DATABASE_URL": db_url,
        "TRADEWIND_MODE": "replay",
        "TRADEWIND_METRICS__ENABLED": "false",
        "TRADEWIND_EXECUTOR__STRATEGY_ENABLED": str(strategy).lower(),
        "TRADEWIND_EXECUTOR__STRATEGY_LOOKBACK": "2",
        "TRADEWIND_EXECUTOR__STRATEGY_THRESHOLD_BPS": "0",
        "TRADEWIND_EXECUTOR__STRATEGY_COOLDOWN_S": "0",
        "TRADEWIND_EXECUTOR__STRATEGY_NOTIONAL": "20",
        "TRADEWIND_EXECUTOR__MARKET_DATA_VENUES": '["binance"]',
        "TRADEWIND_BUS__BLOCK_MS": "50",
        "TRADEWIND_BUS__CLAIM_IDLE_MS": "1000",
        "TRADEWIND_BUS__CLAIM_INTERVAL_MS": "200",
    }
    return subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def feed(redis_url: str, stop: asyncio.Event) -> None:
    redis = connect_redis(redis_url)
    try:
        i = 0
        while not stop.is_set():
            await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(moving_book(i))}, maxlen=10_000)
            i += 1
            await asyncio.sleep(0.01)
    finally:
        await redis.aclose()


@pytest.mark.slow
async def test_a_kill_9_between_journal_and_submit_is_recovered_exactly_once(
    isolated: tuple[str, str], tmp_path: Path
) -> None:
    db_url, redis_url = isolated
    log = tmp_path / "executor.log"
    redis = connect_redis(redis_url)
    stop = asyncio.Event()
    feeder = asyncio.create_task(feed(redis_url, stop))
    proc = start("tests.executor.one_hop_dying_child", db_url, redis_url, log, strategy=True)
    conn = None
    try:
        await until(lambda: _true(proc.poll() is not None), 60, "the executor to die at its first order")
        assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
        journaled = await journal(redis)
        assert journaled, "the intent was journaled before the venue was called"
        cids = {i.client_order_id for i in journaled}
        claims = [await redis.get(f"{CLAIM_KEY}{cid}") for cid in cids]
        assert all(claims), "and claimed in the same round trip"
        conn = await asyncpg.connect(db_url)
        assert await conn.fetchval("SELECT count(*) FROM orders") == 0, "it died before anything was stored"

        proc = start("services.executor", db_url, redis_url, log, strategy=False)

        async def recovered() -> bool:
            rows = await conn.fetchval("SELECT count(*) FROM orders WHERE status = 'filled'")
            return bool(rows == len(cids) and set(await filled_events(redis)) == cids)

        await until(recovered, 60, "the next run to execute the journaled intents")
        await asyncio.sleep(0.5)  # a second execution, if there were one, would land here
        rows = await conn.fetch("SELECT client_order_id, status, amount FROM orders")
        assert {r["client_order_id"] for r in rows} == cids and len(rows) == len(cids)
        fills = await conn.fetch("SELECT client_order_id, amount FROM fills")
        per_order: dict[str, Decimal] = {}
        for f in fills:
            per_order[f["client_order_id"]] = per_order.get(f["client_order_id"], Decimal(0)) + f["amount"]
        assert all(per_order[r["client_order_id"]] == r["amount"] for r in rows), "an order filled twice"
        assert set((await filled_events(redis)).values()) == {1}, "a fill was published twice"
    finally:
        stop.set()
        await feeder
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        if conn is not None:
            await conn.close()
        await redis.aclose()
