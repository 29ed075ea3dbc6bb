"""Coinbase Exchange: trades (``matches``) and L2 books (``level2_batch``) over one connection.

Sequence rules. Every ``match`` carries the product's ``sequence``: one not above the last seen
is a replay of a trade already published, and is dropped. L2 messages carry no sequence, so a
book is trusted from its ``snapshot`` on, and any l2update the feed cannot apply (unreadable,
or for a book with no snapshot yet after a gap) means a lost delta: ``md:status`` gap, the book
dropped, and a resubscription (unsubscribe + subscribe), which makes Coinbase send a new
snapshot; ``md:status`` resynced when it arrives.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec

from services.ingest.connector import Connector, chunked
from services.ingest.venues.coinbase.config import (
    BOOK_CHANNEL,
    HEARTBEAT_CHANNEL,
    MAX_PRODUCTS_PER_SUBSCRIBE,
    TRADE_CHANNEL,
)
from services.ingest.venues.coinbase.schemas import L2Update, LastMatch, Match, Snapshot, decoder
from services.ingest.venues.subscribed import ResyncFeed, iso_ns

_IGNORED = frozenset({"subscriptions", "ticker", "heartbeat", "status", "last_match"})


class CoinbaseFeed(ResyncFeed):
    """Frames of one Coinbase Exchange connection -> trades and books."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._last_sequence: dict[str, int] = {}
        self._updates: dict[str, int] = {}  # book messages per product since its snapshot (the published seq)

    def handle(self, frame: str | bytes, recv_ts: int) -> None:
        try:
            msg = decoder.decode(frame)
        except msgspec.DecodeError as exc:
            self._other(frame, recv_ts, str(exc))
            return
        if type(msg) is LastMatch:
            self.ignored["last_match"] += 1
            return
        try:
            ts = iso_ns(msg.time) if msg.time else recv_ts
        except (ValueError, OverflowError) as exc:
            self._invalid(
                str(msg.__struct_config__.tag), msg.product_id, frame, recv_ts, f"time {msg.time[:40]!r}: {exc}"
            )
            return
        if type(msg) is L2Update:
            self._update(msg, ts, recv_ts)
        elif type(msg) is Match:
            self._match(msg, recv_ts, frame)
        elif type(msg) is Snapshot:
            symbol = self.unified(msg.product_id, frame)
            self._updates[msg.product_id] = 0
            self.publish_snapshot(msg.product_id, symbol, msg.bids, msg.asks, 0, ts, recv_ts)

    def _update(self, msg: L2Update, ts: int, recv_ts: int) -> None:
        symbol = self._unified.get(msg.product_id) or self.unified(msg.product_id, "")
        book = self.live(symbol)
        if book is None:
            self.ignored["l2update before snapshot"] += 1
            return
        bids = [(p, a) for side, p, a in msg.changes if side == "buy"]
        asks = [(p, a) for side, p, a in msg.changes if side == "sell"]
        seq = self._updates[msg.product_id] = self._updates.get(msg.product_id, 0) + 1
        book.apply(bids, asks, seq, ts)
        self.publish_delta(book, bids, asks, seq, ts, recv_ts)

    def _match(self, msg: Match, recv_ts: int, frame: str | bytes) -> None:
        last = self._last_sequence.get(msg.product_id, -1)
        if msg.sequence <= last:
            self.ignored["match already published"] += 1
            return
        self._last_sequence[msg.product_id] = msg.sequence
        if not (msg.price > 0 and msg.size > 0):
            self.errors("invalid match", frame, "price and size must be positive numbers")
            return
        self.sink.trade(msg.to_trade(self.exchange, self.unified(msg.product_id, frame), recv_ts))

    def _other(self, frame: str | bytes, recv_ts: int, why: str) -> None:
        try:
            obj = msgspec.json.decode(frame)
        except msgspec.DecodeError as exc:
            self.errors("not JSON", frame, str(exc))
            return
        kind = obj.get("type") if isinstance(obj, dict) else None
        if not isinstance(kind, str):
            self.errors("unrecognized", frame, why)
        elif kind in _IGNORED:
            self.ignored[kind] += 1
        elif kind == "error":
            self.errors("venue error", frame)
        elif kind in ("l2update", "snapshot", "match"):
            self._invalid(kind, obj.get("product_id"), frame, recv_ts, why)
        else:
            self.errors("unrecognized", frame, why)

    def _invalid(self, kind: str, product: object, frame: str | bytes, recv_ts: int, why: str) -> None:
        """A frame of a known type that cannot be used; an l2update of a live book means a lost delta."""
        self.errors(f"invalid {kind}", frame, why)
        if kind != "l2update" or not isinstance(product, str) or product not in self._unified:
            return
        if self.live(self._unified[product]) is not None:
            self.lost(product, f"unreadable l2update ({why})", recv_ts)


class CoinbaseConnector(Connector):
    """One connection: subscribe frames of at most ``MAX_PRODUCTS_PER_SUBSCRIBE`` products."""

    def ws_url(self) -> str:
        return self.venue.base_url_ws

    def _channels(self) -> list[str]:
        channels = [HEARTBEAT_CHANNEL]
        if self.venue.book:
            channels.append(BOOK_CHANNEL)
        if self.venue.trades:
            channels.append(TRADE_CHANNEL)
        return channels

    def subscribe_frames(self) -> Sequence[str]:
        products = [self.feed.symbols.venue(s, self.exchange) for s in self.venue.symbols]
        return [
            json.dumps({"type": "subscribe", "product_ids": chunk, "channels": self._channels()})
            for chunk in chunked(products, MAX_PRODUCTS_PER_SUBSCRIBE)
        ]

    def resync_frames(self, venue_symbol: str) -> Sequence[str]:
        return [
            json.dumps({"type": kind, "product_ids": [venue_symbol], "channels": [BOOK_CHANNEL]})
            for kind in ("unsubscribe", "subscribe")
        ]
