"""Bars for training and backtests: candle files of every common layout, or bars built from trades.

Formats are detected from the file itself, so `tradewind train --data FILE` takes whatever a user
has: CSV with a header (`date,open,high,low,close,volume`, banner lines allowed), Binance's
headerless kline dump, freqtrade JSON/feather, parquet candles, and trade lists (parquet or
ccxt JSON) that are aggregated into bars. A file that matches none of them gets an error saying
what was expected and where.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import zlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shared.rl.bars import NS_PER_S, Bars

OHLCV = ("open", "high", "low", "close", "volume")
PRICES = ("open", "high", "low", "close")
RowName = Callable[[int], str]  # data row index (0-based) -> "line 7" / "row 7": where a user finds it
TIME_COLUMNS = ("date", "timestamp", "time", "open_time", "datetime", "ts", "unix", "index")


class DataError(ValueError):
    """A data file or table that cannot be turned into bars; the message names what and where."""


def _warn(message: str) -> None:
    # On stderr, not a logger: the CLI configures no logging, and a warning about a file is for its reader.
    sys.stderr.write(f"warning: {message}\n")


def _rows(first_line: int | None, unit: str = "line") -> RowName:
    """Name data rows by their line in the file (``first_line``: the line of row 0) or by number."""
    if first_line is None:
        return lambda i: f"row {i + 1}"
    return lambda i: f"{unit} {first_line + i}"


def _bars_from_frame(frame: pd.DataFrame, where: str, row: RowName | None = None) -> Bars:
    """Turn a frame with a time column and OHLCV columns (any case) into sorted, de-duplicated Bars.

    Every value is checked and a bad one named by its row: dates, prices (> 0, finite), volume (≥ 0,
    finite). Rows out of time order are sorted and identical repeated rows dropped, each with a
    warning naming the rows; two different bars at the same time are an error.
    """
    row = row or _rows(None)
    frame = frame.rename(columns={c: str(c).strip().lower() for c in frame.columns})
    if "volume" not in frame.columns:
        for alt in ("volume_base", "volume_btc", "vol"):
            if alt in frame.columns:
                frame = frame.rename(columns={alt: "volume"})
                break
    missing = [c for c in ("open", "high", "low", "close") if c not in frame.columns]
    if missing:
        raise DataError(
            f"{where}: expected candle columns open, high, low, close[, volume] and a time column; "
            f"missing {missing}, found {list(frame.columns)}"
        )
    time_col = next((c for c in TIME_COLUMNS if c in frame.columns), None)
    if time_col is None and isinstance(frame.index, pd.DatetimeIndex):
        frame = frame.reset_index(names="date")
        time_col = "date"
    if time_col is None:
        unnamed = [c for c in frame.columns if c.startswith("unnamed") or c == ""]
        if not unnamed:
            raise DataError(f"{where}: expected a time column named one of {TIME_COLUMNS}; found {list(frame.columns)}")
        time_col = unnamed[0]
    ts = _to_ns(frame[time_col], f"{where}: column {time_col!r}", row)
    values = {}
    for col in OHLCV:
        if col not in frame.columns:
            values[col] = np.zeros(len(frame))
            continue
        column = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        if col == "volume" and np.isnan(column).all():  # mark-price candles carry no volume
            column = np.zeros(len(column))
        bad = np.flatnonzero(~np.isfinite(column))
        if len(bad):
            i = int(bad[0])
            found = frame[col].iloc[i]
            raise DataError(f"{where}: {row(i)}: column {col!r}: expected a finite number, found {found!r}")
        bad = np.flatnonzero(column <= 0 if col in PRICES else column < 0)
        if len(bad):
            i = int(bad[0])
            expected = "a price > 0" if col in PRICES else "a volume ≥ 0"
            raise DataError(f"{where}: {row(i)}: column {col!r}: expected {expected}, found {column[i]!r}")
        values[col] = column
    return _ordered_bars(ts, values, where, row)


def _ordered_bars(ts: NDArray[np.int64], values: dict[str, NDArray[np.float64]], where: str, row: RowName) -> Bars:
    """Bars in time order; disorder and identical repeats are warned about, conflicting repeats refused."""
    back = np.flatnonzero(ts[1:] < ts[:-1])
    if len(back):
        _warn(
            f"{where}: {len(back)} row(s) out of time order, first at {row(int(back[0]) + 1)} "
            f"(before {row(int(back[0]))}); sorted by time"
        )
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    same = np.flatnonzero(ts[1:] == ts[:-1])  # positions in sorted order whose next bar repeats the time
    if len(same):
        table = np.column_stack([values[k][order] for k in OHLCV])
        conflict = [int(i) for i in same if not np.array_equal(table[i], table[i + 1])]
        if conflict:
            a, b = int(order[conflict[0]]), int(order[conflict[0] + 1])
            raise DataError(
                f"{where}: {row(a)} and {row(b)}: two different bars at the same time "
                f"({pd.Timestamp(int(ts[conflict[0]]), unit='ns')}); {len(conflict)} such conflict(s)"
            )
        _warn(f"{where}: {len(same)} repeated row(s), first {row(int(order[same[0] + 1]))}; dropped")
    keep = np.ones(len(ts), dtype=bool)
    keep[1:] = ts[1:] != ts[:-1]
    idx = order[keep]
    bars = Bars(ts=ts[keep], **{k: v[idx] for k, v in values.items()})
    if len(bars) < 2:
        raise DataError(f"{where}: expected at least 2 bars, found {len(bars)}")
    return bars


def _to_ns(column: pd.Series, where: str, row: RowName | None = None) -> NDArray[np.int64]:
    """Convert epoch numbers (s/ms/us/ns, guessed by magnitude) or date strings to ns UTC."""
    row = row or _rows(None)
    if pd.api.types.is_numeric_dtype(column):
        raw = column.to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(raw) | (raw < 0) | (raw > 9.2e18))
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{where}: {row(i)}: expected a date or epoch number, found {column.iloc[i]!r}")
        scale = np.where(raw > 1e17, 1, np.where(raw > 1e14, 1e3, np.where(raw > 1e11, 1e6, 1e9)))
        if pd.api.types.is_integer_dtype(column):  # exact: float64 ns of today's dates are off by up to 128 ns
            return column.to_numpy(dtype=np.int64) * scale.astype(np.int64)
        return (raw * scale).astype(np.int64)
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(column):
        return _datetimes_to_ns(pd.to_datetime(column, utc=True))
    try:
        parsed = pd.to_datetime(column, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        try:  # CryptoDataDownload hourly files: "2019-10-17 09-AM"
            parsed = pd.to_datetime(column, utc=True, format="%Y-%m-%d %I-%p")
        except (ValueError, TypeError) as exc:
            coerced = pd.to_datetime(column, utc=True, format="ISO8601", errors="coerce")
            bad = np.flatnonzero(coerced.isna().to_numpy())
            i = int(bad[0]) if len(bad) else 0
            raise DataError(f"{where}: {row(i)}: expected a date or epoch number, found {column.iloc[i]!r}") from exc
    return _datetimes_to_ns(parsed)


def _datetimes_to_ns(parsed: pd.Series) -> NDArray[np.int64]:
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]").to_numpy().view(np.int64)


def bars_from_trades(
    ts: NDArray[np.int64],
    price: NDArray[np.float64],
    amount: NDArray[np.float64],
    buy: NDArray[np.bool_] | None = None,
    bar_seconds: float = 60.0,
) -> Bars:
    """Aggregate trades into time bars; empty bars repeat the last close with zero volume.

    `buy` marks trades whose taker bought; it gives the bar's trade-flow imbalance.
    """
    if len(ts) == 0:
        raise DataError("bars_from_trades: expected at least one trade, found none")
    order = np.argsort(ts, kind="stable")
    ts, price, amount = ts[order], price[order], amount[order]
    interval = int(bar_seconds * NS_PER_S)
    bucket = ts // interval
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    first = bucket[0]
    n = int(bucket[-1] - first) + 1
    slot = bucket[starts] - first
    close = np.full(n, np.nan)
    close[slot] = price[ends]
    close = pd.Series(close).ffill().to_numpy()
    open_, high, low = close.copy(), close.copy(), close.copy()
    open_[slot] = price[starts]
    high[slot] = np.maximum.reduceat(price, starts)
    low[slot] = np.minimum.reduceat(price, starts)
    volume = np.zeros(n)
    volume[slot] = np.add.reduceat(amount, starts)
    imbalance = None
    if buy is not None:
        signed = np.where(buy[order], amount, -amount)
        imbalance = np.zeros(n)
        imbalance[slot] = np.add.reduceat(signed, starts) / np.maximum(volume[slot], 1e-300)
    bar_ts = (first + np.arange(n, dtype=np.int64)) * interval
    return Bars(ts=bar_ts, open=open_, high=high, low=low, close=close, volume=volume, imbalance=imbalance)


def _read_text(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return fh.read()


def _load_csv(path: Path) -> Bars:
    text = _read_text(path)
    lines = text.splitlines()
    if not lines:
        raise DataError(f"{path}: expected CSV candles, found an empty file")
    first = lines[0].split(",")
    if len(first) >= 6 and all(_is_number(v) for v in first[:6]):
        # Binance kline dump: open_time, open, high, low, close, volume, close_time, ...
        frame = pd.read_csv(io.StringIO(text), header=None)
        frame = frame.iloc[:, :6]
        frame.columns = ["open_time", *OHLCV]
        return _bars_from_frame(frame, str(path), _rows(1))
    header_line = next((i for i, line in enumerate(lines[:5]) if _looks_like_header(line.lower())), None)
    if header_line is None:
        raise DataError(
            f"{path}: expected a CSV header with open,high,low,close or timestamp,price,amount "
            "(within the first 5 lines) "
            f"or Binance's headerless kline layout (open_time ms, open, high, low, close, volume, ...); "
            f"line 1 is {lines[0][:80]!r}"
        )
    frame = pd.read_csv(io.StringIO(text), skiprows=header_line)
    cols = {str(c).strip().lower() for c in frame.columns}
    if {"price"} <= cols and not {"open", "close"} <= cols:
        return _trades_frame_to_bars(frame, str(path))
    return _bars_from_frame(frame, str(path), _rows(header_line + 2))


def _looks_like_header(line: str) -> bool:
    return ("open" in line and "close" in line) or ("price" in line and ("time" in line or "date" in line))


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _trades_frame_to_bars(frame: pd.DataFrame, where: str, bar_seconds: float = 60.0) -> Bars:
    frame = frame.rename(columns={c: str(c).strip().lower() for c in frame.columns})
    amount_col = next((c for c in ("amount", "quantity", "qty", "size") if c in frame.columns), None)
    time_col = next((c for c in TIME_COLUMNS if c in frame.columns), None)
    if amount_col is None or time_col is None:
        raise DataError(
            f"{where}: expected trade columns timestamp, price, amount|quantity; found {list(frame.columns)}"
        )
    buy = None
    if "side" in frame.columns:
        buy = frame["side"].astype(str).str.lower().eq("buy").to_numpy()
    elif "buyer_maker" in frame.columns:  # Binance: buyer is maker -> the taker sold
        buy = ~frame["buyer_maker"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
    numbers = {}
    for col in ("price", amount_col):
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values) | (values <= 0 if col == "price" else values < 0))
        if len(bad):
            i = int(bad[0])
            found = frame[col].iloc[i]
            raise DataError(f"{where}: row {i + 1}: column {col!r}: expected a finite number > 0, found {found!r}")
        numbers[col] = values
    return bars_from_trades(
        _to_ns(frame[time_col], f"{where}: column {time_col!r}"),
        numbers["price"],
        numbers[amount_col],
        buy,
        bar_seconds,
    )


def _load_json(path: Path, bar_seconds: float) -> Bars:
    try:
        raw: Any = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: expected JSON, parse error at line {exc.lineno} column {exc.colno}") from exc
    if isinstance(raw, list) and raw and isinstance(raw[0], list) and len(raw[0]) >= 6:
        frame = pd.DataFrame([row[:6] for row in raw], columns=["date", *OHLCV])  # freqtrade candles
        return _bars_from_frame(frame, str(path), _rows(1, "item"))
    if isinstance(raw, list) and raw and isinstance(raw[0], dict) and "price" in raw[0]:
        return _trades_frame_to_bars(pd.DataFrame(raw), str(path), bar_seconds)  # ccxt trades
    raise DataError(
        f"{path}: expected a freqtrade candle list [[ms, open, high, low, close, volume], ...] "
        "or a list of ccxt trade objects with timestamp/price/amount"
    )


def _load_table(frame: pd.DataFrame, where: str, bar_seconds: float) -> Bars:
    cols = {str(c).lower() for c in frame.columns}
    if "price" in cols and "close" not in cols:
        return _trades_frame_to_bars(frame, where, bar_seconds)
    return _bars_from_frame(frame, where)


def load_bars(path: str | Path, bar_seconds: float = 60.0) -> Bars:
    """Load bars from a candle or trade file, detecting its format; `bar_seconds` applies to trades."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    name = path.name.lower().removesuffix(".gz")
    try:
        if name.endswith(".feather"):
            return _load_table(pd.read_feather(path), str(path), bar_seconds)
        if name.endswith(".parquet"):
            return _load_table(pd.read_parquet(path), str(path), bar_seconds)
        if name.endswith(".json"):
            return _load_json(path, bar_seconds)
        if name.endswith((".csv", ".txt")):
            return _load_csv(path)
    except DataError:
        raise
    except EOFError as exc:  # a truncated .gz
        raise DataError(f"{path}: the compressed file ends early (truncated download?)") from exc
    except (OSError, ValueError, UnicodeDecodeError, zlib.error, TypeError, IndexError) as exc:
        raise DataError(f"{path}: could not read as {name.rsplit('.', 1)[-1]}: {exc}") from exc
    raise DataError(
        f"{path}: unknown format; expected .csv, .json (freqtrade or ccxt trades), .feather or .parquet "
        "(optionally .gz)"
    )


async def load_bars_from_db(
    db: Any,
    exchange: str,
    symbol: str,
    bar_seconds: float = 60.0,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Bars:
    """Build bars from the `trades` table for one market and time range."""
    rows = await db.fetch(
        "SELECT ts, price, amount, side FROM trades WHERE exchange = $1 AND symbol = $2"
        " AND ($3::timestamptz IS NULL OR ts >= $3) AND ($4::timestamptz IS NULL OR ts < $4) ORDER BY ts",
        exchange,
        symbol,
        start,
        end,
    )
    if not rows:
        window = f"between {start or 'the first recorded trade'} and {end or 'now'}"
        raise DataError(f"trades table: no trades for {exchange} {symbol} {window}; expected at least one")
    ts = np.array([int(r["ts"].timestamp() * 1e6) * 1000 for r in rows], dtype=np.int64)
    price = np.array([r["price"] for r in rows], dtype=np.float64)
    amount = np.array([r["amount"] for r in rows], dtype=np.float64)
    buy = np.array([r["side"] == "buy" for r in rows])
    return bars_from_trades(ts, price, amount, buy, bar_seconds)
