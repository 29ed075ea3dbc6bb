"""The ingest service in replay mode, end to end: the shipped sample served by the in-process
replay exchange, the production connectors, Redis, and the recorder writing PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from services.ingest.service import Ingest
from shared.bus import RedisBus
from shared.config import Settings
from shared.publisher import Publisher
from shared.runtime import TaskFailed
from shared.schemas import streams
from tests.ingest.helpers import read_stream

pytestmark = pytest.mark.integration


async def test_replay_mode_publishes_and_records(redis, db, uid):
    for ex in ("binance", "binance_futures", "coinbase"):
        await redis.delete(streams.md_trades(ex), streams.md_book(ex))
    await redis.delete(streams.MD_STATUS)
    settings = Settings(
        mode="replay",
        ingest={
            "replay": {"speed": 0, "loop": False},
            "recorder": {"group": f"recorder-{uid}", "book_snapshot_interval_s": 0.2},
        },
        bus={"block_ms": 50, "claim_idle_ms": 1000},
    )
    ingest = Ingest(settings, redis, db)
    task = asyncio.create_task(ingest.run())
    try:
        for _ in range(200):
            await asyncio.sleep(0.1)
            server = ingest.server
            if server and server.finished["binance"] and server.finished["binance_futures"]:
                pending = await redis.xpending(streams.md_trades("binance"), f"recorder-{uid}")
                if ingest.recorder and ingest.recorder.trades.rows_written and not pending["pending"]:
                    break
        await asyncio.sleep(0.5)
    finally:
        ingest.stop()
        await asyncio.wait_for(task, 20)

    trades = await read_stream(redis, streams.md_trades("binance"))
    books = await read_stream(redis, streams.md_book("binance_futures"))
    assert len(trades) == 2570 and books and books[0].snapshot
    statuses = {s.exchange for s in await read_stream(redis, streams.MD_STATUS)}
    assert statuses == {"binance", "binance_futures", "coinbase"}  # every venue of the shipped sample
    rows = await db.fetch("SELECT count(*) AS n FROM trades WHERE exchange = 'binance' AND symbol = 'BTC/USDT'")
    assert rows[0]["n"] >= 2570
    snaps = await db.fetch(
        "SELECT exchange, symbol, seq, bids FROM book_snapshots WHERE symbol = 'BTC/USDT' AND exchange LIKE 'binance%'"
    )
    assert {r["exchange"] for r in snaps} == {"binance", "binance_futures"}
    assert all(r["seq"] > 0 for r in snaps)


class BrokenBus(RedisBus):
    async def send_encoded(self, entries: object) -> list[str | Exception]:
        raise RuntimeError("a bug in the writer")

    async def publish_encoded(self, entries: object) -> list[str]:  # what the writer called before
        raise RuntimeError("a bug in the writer")


async def test_a_dead_writer_ends_ingest_instead_of_stalling_it(redis):
    """The publisher's writer dies of a bug (not a Redis error, which it retries): ``run`` raises at once,
    so the process exits non-zero and is restarted, rather than reading frames nobody sends."""
    settings = Settings(mode="replay", ingest={"replay": {"speed": 0, "loop": True}, "recorder": {"enabled": False}})
    ingest = Ingest(settings, redis)
    ingest.publisher = Publisher(BrokenBus(redis, settings.bus))
    task = asyncio.create_task(ingest.run())
    try:
        with pytest.raises(TaskFailed, match="background task publisher failed: RuntimeError"):
            await asyncio.wait_for(task, 30)
    finally:
        ingest.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
