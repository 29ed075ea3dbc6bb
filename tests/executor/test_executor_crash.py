"""Crash test: kill -9 the executor with intents in flight; after a restart each intent executed once.

The executor runs as a real process (`python -m services.executor`) on its own PostgreSQL database
and Redis logical database, fed a recorded Binance book as ingest would publish it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from shared.bus import connect_redis
from shared.paper.recorded import read_binance_capture
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, decode, encode, streams

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests" / "data" / "executor" / "binance_btcusdt_20240809_20s.gz"
N_INTENTS = 150


def start_executor(db_url: str, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRADEWIND_")},
        "REDIS_URL": redis_url,
        "DATABASE_URL": db_url,
        "TRADEWIND_MODE": "replay",
        "TRADEWIND_METRICS__ENABLED": "false",
        "TRADEWIND_EXECUTOR__STRATEGY_ENABLED": "false",
        "TRADEWIND_EXECUTOR__MARKET_DATA_VENUES": '["binance"]',
        "TRADEWIND_BUS__BLOCK_MS": "50",
        "TRADEWIND_BUS__CLAIM_IDLE_MS": "1000",
        "TRADEWIND_BUS__CLAIM_INTERVAL_MS": "200",
        "TRADEWIND_BUS__BATCH_SIZE": "7",
        # the burst of intents is the point here, not the order-rate limit's rejections
        "TRADEWIND_RISK__LIMITS__ORDERS_PER_S": "100000",
        "TRADEWIND_RISK__LIMITS__ORDER_BURST": str(2 * N_INTENTS),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.executor"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def feed_books(redis_url: str, stop: asyncio.Event, snapshot_ids: list[bytes]) -> None:
    """Publish the recorded book as ingest does (a snapshot now and then, deltas between)."""
    redis = connect_redis(redis_url)
    books = [m for m in read_binance_capture(CAPTURE) if isinstance(m, BookUpdate)]
    try:
        i = 0
        while not stop.is_set():
            m = books[i % len(books)]
            if i % 50 == 0:
                m = books[0]  # the snapshot
            now = time.time_ns()
            update = BookUpdate(m.exchange, m.symbol, m.seq, now, now, m.bids, m.asks, m.snapshot)
            entry = await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(update)}, maxlen=10_000)
            if update.snapshot:
                snapshot_ids.append(entry)
            i += 1
            await asyncio.sleep(0.01)
    finally:
        await redis.aclose()


async def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def _market_data_group(redis) -> dict | None:  # type: ignore[no-untyped-def]
    for group in await redis.xinfo_groups(streams.md_book("binance")):
        if group["name"] in ("executor-md", b"executor-md"):
            return group  # type: ignore[no-any-return]
    return None


def _entry_key(entry_id: bytes | str) -> tuple[int, int]:
    ms, _, seq = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).partition("-")
    return int(ms), int(seq)


async def wait_until_priced(redis, snapshot_ids: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    """Wait until the executor's market-data group has handled a snapshot published after the group existed."""

    async def group_exists() -> bool:
        return await _market_data_group(redis) is not None

    await wait_for(group_exists, 30, "the executor's market-data group")
    seen = len(snapshot_ids)

    async def handled_a_later_snapshot() -> bool:
        group = await _market_data_group(redis)
        later = snapshot_ids[seen:]
        return bool(later) and group["pending"] == 0 and _entry_key(group["last-delivered-id"]) >= _entry_key(later[0])

    await wait_for(handled_a_later_snapshot, 30, "the executor's first book")


async def test_kill_9_with_intents_in_flight_executes_each_intent_once(
    isolated: tuple[str, str], uid: str, tmp_path: Path
) -> None:
    db_url, redis_url = isolated
    log = tmp_path / "executor.log"
    redis = connect_redis(redis_url)
    stop = asyncio.Event()
    snapshot_ids: list[bytes] = []
    feeder = asyncio.create_task(feed_books(redis_url, stop, snapshot_ids))
    intents = [
        OrderIntent(
            f"crash-{uid}-{n}",
            "binance",
            "BTC/USDT",
            "buy" if n % 3 else "sell",
            "market",
            round(0.001 + (n % 5) * 0.0001, 8),
            time.time_ns(),
            strategy="crash-test",
        )
        for n in range(N_INTENTS)
    ]
    conn = None
    proc = start_executor(db_url, redis_url, log)
    try:
        await wait_for(lambda: _has_orders_table(db_url), 30, "the executor's migrations")
        conn = await asyncpg.connect(db_url)
        # market orders need a price: send them once the executor has handled a whole book
        await wait_until_priced(redis, snapshot_ids)
        for n, intent in enumerate(intents):  # every 10th intent is delivered twice
            await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(intent)})
            if n % 10 == 0:
                await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(intent)})

        async def some_done() -> bool:
            return await conn.fetchval("SELECT count(*) FROM orders WHERE status = 'filled'") >= 20

        await wait_for(some_done, 30, "the first fills")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done_before = await conn.fetchval("SELECT count(*) FROM orders WHERE status = 'filled'")
        assert done_before < N_INTENTS, "the kill must land with intents still in flight"

        proc = start_executor(db_url, redis_url, log)
        for intent in intents[:5]:  # late duplicates of intents executed before the crash
            await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(intent)})

        async def all_done() -> bool:
            return (
                await conn.fetchval(
                    "SELECT count(*) FROM orders WHERE strategy = 'crash-test' AND status IN ('filled', 'rejected')"
                )
                == N_INTENTS
            )

        try:
            await wait_for(all_done, 60, "every intent to finish")
        except AssertionError:
            rows = await conn.fetch("SELECT status, count(*) FROM orders GROUP BY 1")
            raise AssertionError(f"not all intents finished: {[tuple(r) for r in rows]}") from None
        await asyncio.sleep(0.5)  # let the outbox publish the last events
    finally:
        stop.set()
        await feeder
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    try:
        rows = await conn.fetch(
            "SELECT client_order_id, status, filled, amount, reason FROM orders WHERE strategy = 'crash-test'"
        )
        assert len(rows) == N_INTENTS
        reasons = Counter(r["reason"] for r in rows if r["status"] != "filled")
        assert Counter(r["status"] for r in rows) == {"filled": N_INTENTS}, (reasons, log.read_text()[-3000:])
        assert all(r["filled"] == r["amount"] for r in rows)
        fills = await conn.fetch("SELECT client_order_id, amount FROM fills")
        per_order: dict[str, Decimal] = {}
        for f in fills:
            per_order[f["client_order_id"]] = per_order.get(f["client_order_id"], Decimal(0)) + f["amount"]
        assert all(per_order[r["client_order_id"]] == r["amount"] for r in rows), "an order filled twice"

        events = []
        for _, fields in await redis.xrange(streams.ORDERS_EVENTS):
            events += [m for m in decode(fields[streams.FIELD.encode()]) if isinstance(m, OrderEvent)]
        filled_events = Counter(e.client_order_id for e in events if e.status == "filled")
        assert set(filled_events) == {i.client_order_id for i in intents}
        assert max(filled_events.values()) == 1, "an order's fill was published twice"

        # the ledger explains every stored balance exactly
        mismatched = await conn.fetch(
            """
            SELECT b.exchange, b.wallet, b.asset, b.free + b.locked - b.borrowed - b.interest AS net,
                   coalesce(sum(l.delta), 0) AS ledger
            FROM balances b LEFT JOIN ledger l USING (exchange, wallet, asset)
            GROUP BY b.exchange, b.wallet, b.asset, b.free, b.locked, b.borrowed, b.interest
            HAVING b.free + b.locked - b.borrowed - b.interest <> coalesce(sum(l.delta), 0)
            """
        )
        assert mismatched == []
        btc = await conn.fetchval("SELECT free + locked FROM balances WHERE exchange='binance' AND asset='BTC'")
        bought = await conn.fetchval(
            "SELECT coalesce(sum(CASE WHEN side='buy' THEN amount ELSE -amount END), 0) FROM fills"
            " WHERE exchange='binance'"
        )
        fees = await conn.fetchval(
            "SELECT coalesce(sum(fee), 0) FROM fills WHERE exchange='binance' AND fee_asset='BTC'"
        )
        assert btc == Decimal("0.5") + bought - fees
    finally:
        await conn.close()
        await redis.aclose()


async def _has_orders_table(db_url: str) -> bool:
    try:
        conn = await asyncpg.connect(db_url)
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        return bool(
            await conn.fetchval("SELECT count(*) FROM information_schema.tables WHERE table_name = 'order_events'")
        )
    finally:
        await conn.close()
