"""The recorder: trades consumed through a group and COPYed idempotently; book snapshots."""

from __future__ import annotations

import asyncio

import pytest

from services.ingest.book import OrderBook
from services.ingest.recorder import Recorder
from shared.bus import RedisBus
from shared.schemas import Trade, streams
from shared.sections.ingest import RecorderSettings

pytestmark = pytest.mark.integration


async def test_trades_are_stored_once_and_acked_after_the_write(redis, db, uid, bus_settings):
    exchange = f"rec{uid}"
    bus = RedisBus(redis, bus_settings)
    trades = [
        Trade(exchange, "BTC/USDT", str(i), 100.0 + i, 0.1, "buy", 1_700_000_000_000_000_000 + i, 1) for i in range(250)
    ]
    await bus.publish(streams.md_trades(exchange), trades[:150])
    await bus.publish(streams.md_trades(exchange), trades[100:])  # 50 delivered twice: stored once
    book = OrderBook("BTC/USDT")
    book.load([(99.0, 1.0), (98.0, 2.0)], [(101.0, 1.5)], seq=42, ts=1_700_000_000_000_000_000)
    recorder = Recorder(redis, db, [exchange], RecorderSettings(group=f"g{uid}", book_snapshot_interval_s=0.05),
                        bus_settings, books=lambda: [(exchange, book), (exchange, OrderBook("ETH/USDT"))])  # fmt: skip
    task = asyncio.create_task(recorder.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if recorder.trades.rows_written >= 250 and recorder.snapshots_taken >= 2:
                break
    finally:
        recorder.stop()
        await asyncio.wait_for(task, 10)
    rows = await db.fetch(
        "SELECT count(*) AS n, count(DISTINCT trade_id) AS d FROM trades WHERE exchange = $1", exchange
    )
    assert rows[0]["n"] == rows[0]["d"] == 250
    pending = await redis.xpending(streams.md_trades(exchange), f"g{uid}")
    assert pending["pending"] == 0
    snaps = await db.fetch("SELECT symbol, seq, bids, asks FROM book_snapshots WHERE exchange = $1", exchange)
    assert [(r["symbol"], r["seq"]) for r in snaps] == [("BTC/USDT", 42)]  # unchanged book: one row; empty: none
    assert snaps[0]["bids"] == "[[99.0, 1.0], [98.0, 2.0]]"
