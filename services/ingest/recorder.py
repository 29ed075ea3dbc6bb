"""The recorder: trades from ``md:trades:*`` into PostgreSQL, and periodic top-N book snapshots.

Trades are read through a consumer group and acked only after their COPY batch committed;
rows are idempotent on (exchange, symbol, trade_id, ts), so a batch delivered twice (a
restart, a reclaim) is stored once. Book snapshots are taken from the ingest process's own
books every ``recorder.book_snapshot_interval_s``; a book unchanged since the last one has the
same (ts, seq) key and is not stored again. A book in the middle of a resync is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence

from redis.asyncio import Redis

from services.ingest.book import OrderBook
from shared.bus import Consumer, Delivery
from shared.config import BusSettings
from shared.metrics import ServiceMetrics
from shared.schemas import Trade, streams
from shared.sections.ingest import RecorderSettings
from shared.storage import CopyWriter, Database, ns_to_datetime

log = logging.getLogger(__name__)

TRADE_COLUMNS = ("exchange", "symbol", "trade_id", "price", "amount", "side", "ts", "recv_ts")
BOOK_COLUMNS = ("exchange", "symbol", "ts", "seq", "bids", "asks")

BookSource = Callable[[], Iterable[tuple[str, OrderBook]]]  # (exchange, book) of every live book


def trade_rows(deliveries: Sequence[Delivery]) -> list[tuple[object, ...]]:
    return [
        (m.exchange, m.symbol, m.trade_id, m.price, m.amount, m.side, ns_to_datetime(m.ts), ns_to_datetime(m.recv_ts))
        for d in deliveries
        for m in d.messages
        if isinstance(m, Trade)
    ]


def snapshot_rows(books: Iterable[tuple[str, OrderBook]], depth: int) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for exchange, book in books:
        if book.seq < 0 or not (book.bids or book.asks):
            continue  # never synced, or dropped after a gap and not yet resynced
        bids, asks = book.top(depth)
        rows.append((exchange, book.symbol, ns_to_datetime(book.ts), book.seq, json.dumps(bids), json.dumps(asks)))
    return rows


class Recorder:
    """Consume trades into ``trades`` and snapshot books into ``book_snapshots`` until ``stop()``.

    Market data into PostgreSQL; risk's ``Recorder`` (``services.risk.record``) records risk events.
    """

    def __init__(
        self,
        redis: Redis,
        db: Database,
        exchanges: Sequence[str],
        settings: RecorderSettings,
        bus: BusSettings,
        books: BookSource | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.books = books
        self.trades = CopyWriter(db, "trades", TRADE_COLUMNS)
        self.snapshots = CopyWriter(db, "book_snapshots", BOOK_COLUMNS)
        self.metrics = metrics
        self.consumer = Consumer(
            redis,
            [streams.md_trades(e) for e in exchanges],
            settings.group,
            self._store_trades,
            bus,
            metrics=metrics,
        )
        self._stopping = asyncio.Event()
        self.snapshots_taken = 0

    def stop(self) -> None:
        self._stopping.set()
        self.consumer.stop()

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.consumer.run(), name="recorder-trades")]
        if self.books is not None:
            tasks.append(asyncio.create_task(self._snapshot_loop(), name="recorder-books"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _store_trades(self, deliveries: list[Delivery]) -> None:
        rows = trade_rows(deliveries)
        if rows:
            await self.trades.write(rows)
        if self.metrics:
            for d in deliveries:
                self.metrics.count_in(d.stream, len(d.messages))

    async def snapshot_once(self) -> int:
        """Store the top levels of every live book now; return how many rows were new."""
        assert self.books is not None
        rows = snapshot_rows(self.books(), self.settings.book_snapshot_depth)
        self.snapshots_taken += 1
        return await self.snapshots.write(rows) if rows else 0

    async def _snapshot_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.book_snapshot_interval_s)
            try:
                await self.snapshot_once()
            except Exception as exc:  # a failed snapshot is retried at the next interval
                log.warning("book snapshot failed: %r", exc)
                if self.metrics:
                    self.metrics.error("book_snapshot")
