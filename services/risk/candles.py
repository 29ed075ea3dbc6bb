"""Candle-driven market data for `tradewind risk simulate`: a recorded sell-off replayed from 1-minute bars.

Bars say only open, high, low, close and volume, so what happens inside a bar is **interpolated,
not recorded**: the price goes open → the extreme nearer the open → the other extreme → close,
linearly, one point every ``step_s`` seconds (a falling bar, close < open, visits its high first;
both extremes are visited exactly).
Each point is one trade of the bar's volume spread evenly over its points (volume in quote, as
these files give it), taker side by the tick's direction, and one synthetic book snapshot around
the price (``half_spread`` and ``LEVELS`` levels of constant depth). So only the detector's
velocity and flow signals see real information; depth and spread are flat by construction.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from datetime import UTC, datetime
from pathlib import Path

from services.risk.replay import NS, DataError, MarketMessage
from shared.schemas import BookUpdate, Trade

HEADER = ["timestamp", "open", "high", "low", "close", "volume"]
LEVELS = 10


def is_candles(path: Path) -> bool:
    """A CSV whose header starts ``timestamp,open,high,low,close``."""
    if not path.is_file() or ".csv" not in path.name:
        return False
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as f:
            return f.readline().strip().lower().split(",")[:5] == HEADER[:5]
    except (OSError, EOFError, UnicodeDecodeError):
        return False


def _bars(path: Path) -> list[tuple[int, float, float, float, float, float]]:
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rb") as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8"))
        next(reader)
        for lineno, row in enumerate(reader, 2):
            try:
                when = datetime.fromisoformat(row[0]).replace(tzinfo=UTC)
                o, h, lo, c, v = (float(x) for x in row[1:6])
            except (ValueError, IndexError) as exc:
                raise DataError(f"{path}:{lineno}: not a timestamp,open,high,low,close,volume row ({exc})") from None
            if not all(math.isfinite(x) and x > 0 for x in (o, h, lo, c)) or not lo <= min(o, c) <= max(o, c) <= h:
                raise DataError(f"{path}:{lineno}: prices must be finite, > 0 and low <= open, close <= high")
            out.append((int(when.timestamp()) * NS, o, h, lo, c, max(v, 0.0)))
    if not out:
        raise DataError(f"{path}: no bars")
    return out


def bar_path(o: float, h: float, lo: float, c: float, points: int) -> list[float]:
    """``points`` prices through the bar: open → nearer extreme → other extreme → close, linearly, each
    leg given points in proportion to its length, both extremes visited exactly (``points`` >= 3)."""
    first, second = (h, lo) if c < o else (lo, h)
    cum = [0.0, abs(first - o), abs(first - o) + abs(second - first)]
    total = cum[2] + abs(c - second)
    if total == 0:
        return [o] * points
    i1 = min(max(1, round(cum[1] / total * points)), points - 2)
    i2 = min(max(i1 + 1, round(cum[2] / total * points)), points - 1)
    knots = [(0, o), (i1, first), (i2, second), (points, c)]
    out = []
    for i in range(1, points + 1):
        (a, pa), (b, pb) = next((k, knots[n + 1]) for n, k in enumerate(knots[:-1]) if i <= knots[n + 1][0])
        out.append(pa + (pb - pa) * (i - a) / (b - a))
    return out


def load_candles(
    path: Path, exchange: str = "candles", symbol: str = "BTC/USD", step_s: float = 5.0, half_spread: float = 1e-4
) -> list[MarketMessage]:
    """The bars of ``path`` as trades and book snapshots of one market, in time order."""
    points = max(3, round(60 / step_s))
    step_ns = 60 * NS // points
    out: list[MarketMessage] = []
    seq = 0
    prev = None
    for ts0, o, h, lo, c, volume in _bars(path):
        prices = bar_path(o, h, lo, c, points)
        notional = volume / points
        for i, price in enumerate(prices):
            ts = ts0 + (i + 1) * step_ns
            seq += 1
            side = "sell" if prev is not None and price < prev else "buy"
            prev = price
            out.append(Trade(exchange, symbol, str(seq), price, notional / price, side, ts, ts))  # type: ignore[arg-type]
            depth = notional / price  # each level holds one point's volume
            bids = [(price * (1 - half_spread * (1 + k)), depth) for k in range(LEVELS)]
            asks = [(price * (1 + half_spread * (1 + k)), depth) for k in range(LEVELS)]
            out.append(BookUpdate(exchange, symbol, seq, ts, ts, bids, asks, snapshot=True))
    return out
