"""Recorded market data for the crash simulation: normalized JSON lines, and an injected crash.

Input is what `tradewind normalize` prints (one ``trade``/``book``/``status`` JSON object per
line, ``.gz`` allowed). The crash scales the prices of its venues (one venue, or every venue of the
asset for a market-wide crash) by a profile — linear fall to ``1 - depth`` over ``fall_s``,
linear recovery over ``recover_s`` — thins their books by up to ``thin`` at the bottom, and makes
their trades taker sells while the price falls (a crash is sellers hitting bids). Book deltas on
a crashed venue are folded into a local book and sent as scaled snapshots while the profile is
active, so scaled and unscaled levels never mix.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from shared.schemas import BookUpdate, Status, Trade

MarketMessage = Trade | BookUpdate  # what the simulation replays (not a crash.Market)
NS = 1_000_000_000
_decoder = msgspec.json.Decoder(Trade | BookUpdate | Status, strict=False)


class DataError(ValueError):
    """A line of the data file is not a normalized message; the text names file and line."""


def load_messages(path: Path) -> list[MarketMessage]:
    """Read a normalized JSON-lines file (status lines skipped), sorted by receive time."""
    opener = gzip.open if path.suffix == ".gz" else open
    out: list[MarketMessage] = []
    try:
        with opener(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    msg = _decoder.decode(line)
                except msgspec.DecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not a normalized trade/book message: {exc}") from None
                if not isinstance(msg, Status):
                    check_prices(msg, f"{path}:{lineno}")
                    out.append(msg)
    except EOFError:
        raise DataError(f"{path}: the compressed file ends early (truncated?)") from None
    except (OSError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if not out:
        raise DataError(f"{path}: no trade or book messages (expected `tradewind normalize` output)")
    out.sort(key=lambda m: m.recv_ts)
    return out


def check_prices(msg: MarketMessage, where: str) -> None:
    """A price must be finite and > 0, an amount finite and ≥ 0: the simulation divides and takes logs."""
    levels = [(msg.price, msg.amount)] if isinstance(msg, Trade) else [*msg.bids, *msg.asks]
    for price, amount in levels:
        if not (math.isfinite(price) and price > 0 and math.isfinite(amount) and amount >= 0):
            what = "trade" if isinstance(msg, Trade) else "book level"
            raise DataError(f"{where}: {what} [{price}, {amount}]: expected a finite price > 0 and amount ≥ 0")


@dataclass(frozen=True, slots=True)
class CrashProfile:
    venues: frozenset[str]
    start_ns: int
    depth: float  # 0.3: the price falls 30%
    fall_s: float
    recover_s: float
    thin: float = 0.8  # share of book depth gone at the bottom

    @property
    def end_ns(self) -> int:
        return self.start_ns + int((self.fall_s + self.recover_s) * NS)

    def factor(self, ts: int) -> float:
        """Price multiplier at ``ts``."""
        t = (ts - self.start_ns) / NS
        if t <= 0 or self.depth <= 0:
            return 1.0
        if t < self.fall_s:
            return 1.0 - self.depth * t / self.fall_s
        t -= self.fall_s
        if t < self.recover_s:
            return 1.0 - self.depth * (1.0 - t / self.recover_s)
        return 1.0

    def falling(self, ts: int) -> bool:
        return self.start_ns < ts < self.start_ns + int(self.fall_s * NS)


def inject(messages: Iterable[MarketMessage], crash: CrashProfile | None, levels: int = 20) -> Iterator[MarketMessage]:
    """Yield ``messages`` with ``crash`` applied (``None`` or depth 0: unchanged)."""
    if crash is None or crash.depth <= 0:
        yield from messages
        return
    books: dict[tuple[str, str], tuple[dict[float, float], dict[float, float]]] = {}
    resynced: set[tuple[str, str]] = set()
    for msg in messages:
        if msg.exchange not in crash.venues:
            yield msg
            continue
        ts = msg.recv_ts
        active = crash.start_ns < ts < crash.end_ns
        if isinstance(msg, Trade):
            if not active:
                yield msg
                continue
            side = "sell" if crash.falling(ts) else msg.side
            yield msgspec.structs.replace(msg, price=msg.price * crash.factor(ts), side=side)
            continue
        key = (msg.exchange, msg.symbol)
        bids, asks = books.setdefault(key, ({}, {}))
        if msg.snapshot:
            bids.clear()
            asks.clear()
        for side_book, lv in ((bids, msg.bids), (asks, msg.asks)):
            for price, amount in lv:
                if amount:
                    side_book[price] = amount
                else:
                    side_book.pop(price, None)
        if not active:
            if ts >= crash.end_ns and key not in resynced:
                resynced.add(key)  # after the crash: one true full snapshot, then deltas again
                yield _snapshot(msg, bids, asks, 1.0, 1.0, None)
            else:
                yield msg
            continue
        f = crash.factor(ts)
        keep = 1.0 - crash.thin * (1.0 - f) / crash.depth
        yield _snapshot(msg, bids, asks, f, keep, levels)


def _snapshot(
    msg: BookUpdate,
    bids: dict[float, float],
    asks: dict[float, float],
    factor: float,
    keep: float,
    levels: int | None,
) -> BookUpdate:
    top_b = sorted(bids.items(), reverse=True)[:levels]
    top_a = sorted(asks.items())[:levels]
    return BookUpdate(
        msg.exchange,
        msg.symbol,
        msg.seq,
        msg.ts,
        msg.recv_ts,
        [(p * factor, a * keep) for p, a in top_b],
        [(p * factor, a * keep) for p, a in top_a],
        snapshot=True,
    )
