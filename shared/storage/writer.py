"""Batched, idempotent inserts with COPY.

Rows are COPYed into a per-connection staging table, then moved with
``INSERT ... ON CONFLICT DO NOTHING`` in the same transaction: COPY's speed, and a batch
retried after a lost connection (which may or may not have committed) is never stored twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from shared.storage.db import Database, retrying

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def ns_to_datetime(ns: int) -> dt.datetime:
    """Integer nanoseconds UTC (the bus's timestamps) → aware datetime (microsecond precision)."""
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


class CopyWriter:
    """Write rows of one table; ``write`` returns once they are committed (then ack upstream)."""

    def __init__(self, db: Database, table: str, columns: Sequence[str]) -> None:
        if not table.isidentifier() or not all(c.isidentifier() for c in columns):
            raise ValueError(f"CopyWriter: table and column names must be plain identifiers, got {table!r} {columns!r}")
        self.db = db
        self.table = table
        self.columns = list(columns)
        self.stage = f"stage_{table}"
        cols = ", ".join(self.columns)
        self._create_stage = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        self._move = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {self.stage} ON CONFLICT DO NOTHING"
        self.rows_written = 0
        self.retries = 0

    async def write(self, rows: Sequence[tuple[object, ...]]) -> int:
        """Store ``rows`` (in COPY batches of ``storage.copy_batch``); return how many were new."""
        inserted = 0
        size = self.db.settings.copy_batch
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            inserted += await retrying(
                lambda chunk=chunk: self._write_chunk(chunk),  # type: ignore[misc]
                f"COPY into {self.table}",
                self.db.settings.retry_max_s,
                on_retry=self._count_retry,
            )
        self.rows_written += inserted
        return inserted

    def _count_retry(self) -> None:
        self.retries += 1

    async def _write_chunk(self, rows: Sequence[tuple[object, ...]]) -> int:
        async with self.db.pool.acquire() as conn, conn.transaction():
            await conn.execute(self._create_stage)
            await conn.copy_records_to_table(self.stage, records=rows, columns=self.columns)
            status = await conn.execute(self._move)
        return int(status.rsplit(" ", 1)[-1])
