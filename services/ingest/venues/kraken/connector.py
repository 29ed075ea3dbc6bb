"""Kraken spot (websocket v1): trades and L2 books with CRC32 checksums.

Book rule (Kraken's "book checksum" guide): apply each update's levels (volume 0 deletes), keep
each side truncated to the subscribed depth, then the CRC32 of the best 10 levels per side must
equal the update's ``c``. A mismatch, or a book frame that cannot be read, means the book has
drifted: ``md:status`` gap, the book dropped, unsubscribe + subscribe (Kraken then sends a new
snapshot), ``md:status`` resynced. An update is published only after its checksum matched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec

from services.ingest.book import OrderBook, TextLevel
from services.ingest.connector import Connector, chunked
from services.ingest.venues.kraken.config import CHECKSUM_LEVELS, MAX_PAIRS_PER_SUBSCRIBE, book_depth
from services.ingest.venues.kraken.schemas import book_parts, checksum, trades_of
from services.ingest.venues.subscribed import ResyncFeed

_EVENTS = frozenset({"heartbeat", "systemStatus", "subscriptionStatus", "pong"})


def _truncate(book: OrderBook, depth: int) -> list[tuple[list[tuple[float, float]], bool]]:
    """Drop levels beyond ``depth`` per side; returns the deletions, as (levels, is bids)."""
    out = []
    for side, text, is_bids in ((book.bids, book.bids_text, True), (book.asks, book.asks_text, False)):
        removed = []
        while len(side) > depth:
            worst = min(side) if is_bids else max(side)
            del side[worst]
            text.pop(worst, None)
            removed.append((worst, 0.0))
        out.append((removed, is_bids))
    return out


def _floats(levels: list[TextLevel]) -> list[tuple[float, float]]:
    return [(float(p), float(a)) for p, a in levels]


class KrakenFeed(ResyncFeed):
    """Frames of one Kraken v1 connection -> trades and checksum-verified books."""

    keep_text = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.verified = 0  # checksums that matched (tests and metrics)

    def handle(self, frame: str | bytes, recv_ts: int) -> None:
        try:
            msg = msgspec.json.decode(frame)
        except msgspec.DecodeError as exc:
            self.errors("not JSON", frame, str(exc))
            return
        if isinstance(msg, dict):
            self._event(msg, frame)
            return
        if not (isinstance(msg, list) and len(msg) >= 4 and isinstance(msg[-1], str) and isinstance(msg[-2], str)):
            self.errors("unrecognized", frame, "expected [channelID, ..., channelName, pair]")
            return
        channel, pair = msg[-2], msg[-1]
        if channel.startswith("book-"):
            self._book(msg, channel, pair, frame, recv_ts)
        elif channel == "trade":
            try:
                trades = trades_of(msg[1], self.exchange, self.unified(pair, frame), recv_ts)
            except (ValueError, TypeError, IndexError, AttributeError) as exc:
                self.errors("invalid trade", frame, str(exc))
                return
            for trade in trades:
                if trade.price > 0 and trade.amount > 0:
                    self.sink.trade(trade)
                else:
                    self.errors("invalid trade", frame, "price and volume must be positive numbers")
        else:
            self.ignored[channel.split("-", 1)[0]] += 1

    def _event(self, msg: dict, frame: str | bytes) -> None:
        event = msg.get("event")
        if msg.get("status") == "error" or event == "error":
            self.errors("venue error", frame)
        elif isinstance(event, str) and event in _EVENTS:
            self.ignored[event] += 1
        else:
            self.errors("unrecognized", frame)

    def _book(self, msg: list, channel: str, pair: str, frame: str | bytes, recv_ts: int) -> None:
        try:
            snapshot, bids, asks, expected, ts = book_parts(msg)
            bid_levels, ask_levels = _floats(bids), _floats(asks)
            depth = int(channel[5:])
            want = int(expected) if expected is not None else None
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            self.errors("invalid book", frame, str(exc))
            if pair in self._unified and self.live(self._unified[pair]) is not None:
                self.lost(pair, f"unreadable book update ({exc})", recv_ts)
            return
        symbol = self.unified(pair, frame)
        if snapshot:
            self.publish_snapshot(pair, symbol, bid_levels, ask_levels, 0, ts, recv_ts, text=(bids, asks))
            return
        book = self.live(symbol)
        if book is None:
            self.ignored["book update before snapshot"] += 1
            return
        book.apply_text(bids, asks, book.seq + 1, ts or recv_ts)
        for removed, is_bids in _truncate(book, depth):
            (bid_levels if is_bids else ask_levels).extend(removed)
        if want is not None:
            top_bids, top_asks = book.top_text(CHECKSUM_LEVELS)
            actual = checksum(top_bids, top_asks)
            if actual != want:
                self.lost(pair, f"checksum mismatch: book gives {actual}, Kraken says {want}", recv_ts)
                return
            self.verified += 1
        self.publish_delta(book, bid_levels, ask_levels, book.seq, ts or recv_ts, recv_ts)


class KrakenConnector(Connector):
    """One v1 connection: ``subscribe`` frames per channel, at most 100 pairs each."""

    def ws_url(self) -> str:
        return self.venue.base_url_ws

    def _pairs(self) -> list[str]:
        return [self.feed.symbols.venue(s, self.exchange) for s in self.venue.symbols]

    def _book_subscription(self) -> dict[str, object]:
        return {"name": "book", "depth": book_depth(self.venue.snapshot_limit)}

    def subscribe_frames(self) -> Sequence[str]:
        subscriptions: list[dict[str, object]] = []
        if self.venue.trades:
            subscriptions.append({"name": "trade"})
        if self.venue.book:
            subscriptions.append(self._book_subscription())
        return [
            json.dumps({"event": "subscribe", "pair": chunk, "subscription": sub})
            for sub in subscriptions
            for chunk in chunked(self._pairs(), MAX_PAIRS_PER_SUBSCRIBE)
        ]

    def resync_frames(self, venue_symbol: str) -> Sequence[str]:
        return [
            json.dumps({"event": event, "pair": [venue_symbol], "subscription": self._book_subscription()})
            for event in ("unsubscribe", "subscribe")
        ]
