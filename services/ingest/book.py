"""An L2 order book per symbol: O(1) level updates, sorted views only when asked for.

Deltas arrive far more often than anyone reads the sorted book (the recorder every few
seconds, tests at the end), so each side is a plain ``dict`` price -> amount and the top N is
computed on demand (``heapq``: O(levels), ~0.1 ms for a 5,000-level side). A book can also keep
the venue's own text of every level, which checksum rules (Kraken, OKX, Bitfinex) are defined
over; the helpers at the bottom compute those checksums.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Iterable, Sequence

Level = tuple[float, float]
TextLevel = tuple[str, str]


class OrderBook:
    """One symbol's book. ``seq`` is the venue sequence of the last update applied (-1: none).

    The venue's own book as ingest rebuilds it from the wire: sequence-checked, with the levels'
    exact text kept where a venue checksums it. Its namesakes: ``shared.paper.book.SimBook`` (the
    paper venue's book that our simulated orders consume), the arbitrage engine's ``Book`` (an
    immutable snapshot of visible levels) and ``shared.pretrade.VenueAccount`` (no levels at all).
    """

    __slots__ = ("asks", "asks_text", "bids", "bids_text", "keep_text", "seq", "symbol", "ts")

    def __init__(self, symbol: str, keep_text: bool = False) -> None:
        self.symbol = symbol
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.keep_text = keep_text
        self.bids_text: dict[float, TextLevel] = {}
        self.asks_text: dict[float, TextLevel] = {}
        self.seq = -1
        self.ts = 0

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)

    def clear(self) -> None:
        """Forget every level (after a gap: a book built across one must never be used)."""
        self.bids.clear()
        self.asks.clear()
        self.bids_text.clear()
        self.asks_text.clear()
        self.seq = -1
        self.ts = 0

    def load(self, bids: Iterable[Level], asks: Iterable[Level], seq: int, ts: int = 0) -> None:
        """Replace the whole book with a snapshot (zero amounts are skipped)."""
        self.clear()
        self.bids.update((p, a) for p, a in bids if a)
        self.asks.update((p, a) for p, a in asks if a)
        self.seq = seq
        self.ts = ts

    def apply(self, bids: Iterable[Level], asks: Iterable[Level], seq: int, ts: int = 0) -> None:
        """Apply one delta: set each level's amount; amount 0 deletes the level."""
        side = self.bids
        for price, amount in bids:
            if amount:
                side[price] = amount
            else:
                side.pop(price, None)
        side = self.asks
        for price, amount in asks:
            if amount:
                side[price] = amount
            else:
                side.pop(price, None)
        self.seq = seq
        self.ts = ts

    def apply_text(self, bids: Iterable[TextLevel], asks: Iterable[TextLevel], seq: int, ts: int = 0) -> None:
        """Apply a delta given as the venue's strings, keeping them for checksums."""
        for levels, side, text in ((bids, self.bids, self.bids_text), (asks, self.asks, self.asks_text)):
            for price_s, amount_s in levels:
                price, amount = float(price_s), float(amount_s)
                if amount:
                    side[price] = amount
                    text[price] = (price_s, amount_s)
                else:
                    side.pop(price, None)
                    text.pop(price, None)
        self.seq = seq
        self.ts = ts

    def top(self, n: int) -> tuple[list[Level], list[Level]]:
        """The best ``n`` levels per side: bids high to low, asks low to high."""
        bids, asks = self.bids, self.asks
        best_bids = heapq.nlargest(n, bids) if n < len(bids) else sorted(bids, reverse=True)
        best_asks = heapq.nsmallest(n, asks) if n < len(asks) else sorted(asks)
        return [(p, bids[p]) for p in best_bids], [(p, asks[p]) for p in best_asks]

    def top_text(self, n: int) -> tuple[list[TextLevel], list[TextLevel]]:
        """The best ``n`` levels per side as the venue's own strings (books with ``keep_text``)."""
        bids, asks = self.bids_text, self.asks_text
        return (
            [bids[p] for p in heapq.nlargest(n, bids)],
            [asks[p] for p in heapq.nsmallest(n, asks)],
        )

    def levels(self) -> tuple[list[Level], list[Level]]:
        """The whole book, sorted like ``top``."""
        return self.top(max(len(self.bids), len(self.asks)))

    def best(self) -> tuple[Level | None, Level | None]:
        """Best bid and best ask (None for an empty side)."""
        bid = max(self.bids) if self.bids else None
        ask = min(self.asks) if self.asks else None
        return (
            (bid, self.bids[bid]) if bid is not None else None,
            (ask, self.asks[ask]) if ask is not None else None,
        )

    def crossed(self) -> bool:
        """True when the best bid is at or above the best ask: a sign of a book gone wrong."""
        bid, ask = self.best()
        return bid is not None and ask is not None and bid[0] >= ask[0]


def crc32(text: str) -> int:
    """Unsigned CRC32 of ``text`` (Kraken's book checksum)."""
    return zlib.crc32(text.encode()) & 0xFFFFFFFF


def crc32_signed(text: str) -> int:
    """Signed 32-bit CRC32 of ``text`` (OKX's and Bitfinex's book checksums)."""
    value = zlib.crc32(text.encode()) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def interleave(bids: Sequence[TextLevel], asks: Sequence[TextLevel]) -> list[TextLevel]:
    """bid0, ask0, bid1, ask1, ...: the order OKX and Bitfinex checksum their top levels in."""
    out: list[TextLevel] = []
    for i in range(max(len(bids), len(asks))):
        if i < len(bids):
            out.append(bids[i])
        if i < len(asks):
            out.append(asks[i])
    return out
