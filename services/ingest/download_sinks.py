"""Where `tradewind download` stores history, and what is already stored there (so a rerun resumes).

``CsvSink``: the folder layout the portfolio trainer reads (``services.trainer.market_dir``): bars in
``DIR/<exchange>__<BASE>-<QUOTE>.csv`` (header ``date,open,high,low,close,volume``), public trades in
``DIR/trades/<exchange>__<BASE>-<QUOTE>.csv`` (header ``id,timestamp,price,amount,side``; a subfolder,
so that the trainer's market folder holds bars only). ``DbSink``: the ``bars`` table and the same
``trades`` table the recorder fills (rows keyed naturally, so a repeated row is ignored).
"""

from __future__ import annotations

import csv
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.storage.db import Database

BAR_HEADER = "date,open,high,low,close,volume"
TRADE_HEADER = "id,timestamp,price,amount,side"


def file_stem(exchange: str, symbol: str) -> str:
    """``binance__BTC-USDT`` for ("binance", "BTC/USDT") (a ccxt symbol's settle suffix ``:USDT`` dropped)."""
    base, quote = symbol.split(":", 1)[0].split("/", 1)
    return f"{exchange}__{base}-{quote}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a file, read from its end (a year of 1-minute bars is ~30 MB)."""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        chunk = min(size, 4096)
        while True:
            fh.seek(size - chunk)
            lines = fh.read(chunk).decode().splitlines()
            if len(lines) > count or chunk == size:
                return [line for line in lines if line.strip()][-count:]
            chunk = min(size, chunk * 4)


class CsvSink:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def bar_path(self, exchange: str, symbol: str) -> Path:
        return self.folder / f"{file_stem(exchange, symbol)}.csv"

    def trade_path(self, exchange: str, symbol: str) -> Path:
        return self.folder / "trades" / f"{file_stem(exchange, symbol)}.csv"

    async def bar_span(self, exchange: str, symbol: str, timeframe: str) -> tuple[int, int] | None:
        path = self.bar_path(exchange, symbol)
        if not path.exists() or path.stat().st_size == 0:
            return None
        with path.open() as fh:
            header, first = fh.readline().strip(), fh.readline().strip()
        if header != BAR_HEADER:
            raise ValueError(f"{path}: expected the header {BAR_HEADER!r}, found {header[:80]!r}")
        if not first:
            return None
        try:
            return _ms(first.split(",", 1)[0]), _ms(_last_lines(path, 1)[0].split(",", 1)[0])
        except ValueError as exc:
            raise ValueError(f"{path}: expected an ISO date in the first column: {exc}") from exc

    async def write_bars(self, exchange: str, symbol: str, timeframe: str, rows: list[list[float]]) -> None:
        path = self.bar_path(exchange, symbol)
        lines = [f"{_iso(int(r[0]))},{r[1]!r},{r[2]!r},{r[3]!r},{r[4]!r},{r[5]!r}" for r in rows]
        span = await self.bar_span(exchange, symbol, timeframe)
        if span is not None and int(rows[0][0]) <= span[1]:  # history before what is stored: merge, in order
            merged = {line.split(",", 1)[0]: line for line in [*path.read_text().splitlines()[1:], *lines]}
            tmp = path.with_suffix(".csv.tmp")
            tmp.write_text("\n".join([BAR_HEADER, *(merged[d] for d in sorted(merged))]) + "\n")
            tmp.replace(path)  # atomic: an interrupted merge leaves the old file
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            if span is None and fh.tell() == 0:
                fh.write(BAR_HEADER + "\n")
            fh.write("\n".join(lines) + "\n")

    async def last_trade(self, exchange: str, symbol: str) -> tuple[int, set[str]] | None:
        path = self.trade_path(exchange, symbol)
        if not path.exists():
            return None
        rows = [r for r in csv.reader(_last_lines(path, 200)) if r and r[0] != "id"]
        if not rows:
            return None
        last = int(rows[-1][1])
        return last, {r[0] for r in rows if int(r[1]) == last}

    async def write_trades(self, exchange: str, symbol: str, trades: list[dict[str, Any]]) -> None:
        path = self.trade_path(exchange, symbol)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        with path.open("a", newline="") as fh:
            if new:
                fh.write(TRADE_HEADER + "\n")
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerows([t["id"], t["timestamp"], t["price"], t["amount"], t["side"]] for t in trades)


class DbSink:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def bar_span(self, exchange: str, symbol: str, timeframe: str) -> tuple[int, int] | None:
        rows = await self.db.fetch(
            "SELECT min(ts) AS first, max(ts) AS last FROM bars WHERE exchange = $1 AND symbol = $2 AND timeframe = $3",
            exchange, symbol, timeframe,
        )  # fmt: skip
        if not rows or rows[0]["first"] is None:
            return None
        return int(rows[0]["first"].timestamp() * 1000), int(rows[0]["last"].timestamp() * 1000)

    async def write_bars(self, exchange: str, symbol: str, timeframe: str, rows: list[list[float]]) -> None:
        records = [
            (exchange, symbol, timeframe, datetime.fromtimestamp(r[0] / 1000, UTC), *(float(v) for v in r[1:6]))
            for r in rows
        ]
        async with self.db.pool.acquire() as conn:
            await conn.executemany(
                "INSERT INTO bars (exchange, symbol, timeframe, ts, open, high, low, close, volume)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                records,
            )

    async def last_trade(self, exchange: str, symbol: str) -> tuple[int, set[str]] | None:
        rows = await self.db.fetch(
            "SELECT trade_id, ts FROM trades WHERE exchange = $1 AND symbol = $2"
            " AND ts = (SELECT max(ts) FROM trades WHERE exchange = $1 AND symbol = $2)",
            exchange, symbol,
        )  # fmt: skip
        if not rows:
            return None
        return int(rows[0]["ts"].timestamp() * 1000), {r["trade_id"] for r in rows}

    async def write_trades(self, exchange: str, symbol: str, trades: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)  # history has no receive time of ours: the download's
        records = [
            (exchange, symbol, str(t["id"]), float(t["price"]), float(t["amount"]), t["side"],
             datetime.fromtimestamp(t["timestamp"] / 1000, UTC), now)
            for t in trades
        ]  # fmt: skip
        async with self.db.pool.acquire() as conn:
            await conn.executemany(
                "INSERT INTO trades (exchange, symbol, trade_id, price, amount, side, ts, recv_ts)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                records,
            )
