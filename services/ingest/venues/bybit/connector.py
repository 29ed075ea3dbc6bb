"""Bybit v5 (linear): trades (``publicTrade``) and L2 books (``orderbook.{depth}``).

Book rule (Bybit's orderbook docs): a ``snapshot`` replaces the book (also mid-stream, e.g. after
a Bybit restart, when ``u`` starts again at 1); each ``delta``'s ``u`` must be the previous
message's ``u`` + 1. A delta that does not follow, or cannot be read, is a gap: ``md:status``
gap, the book dropped, unsubscribe + subscribe (a new snapshot comes), ``md:status`` resynced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import msgspec

from services.ingest.connector import Connector, chunked
from services.ingest.venues.bybit.config import MAX_ARGS_PER_SUBSCRIBE, PING_INTERVAL_S, WS_PATH, book_depth
from services.ingest.venues.bybit.schemas import MS, book_decoder, topic_decoder, trade_decoder
from services.ingest.venues.bybit.symbols import guess_unified
from services.ingest.venues.subscribed import ResyncFeed

_BOOK_SYMBOL = re.compile(r'"topic":"orderbook\.\d+\.([A-Z0-9]+)"')


class BybitFeed(ResyncFeed):
    """Frames of one Bybit v5 public connection -> trades and books."""

    def unified(self, venue_symbol: str, frame: str | bytes) -> str:
        known = self._unified.get(venue_symbol)
        if known is not None:
            return known
        guess = guess_unified(venue_symbol)
        if guess is None:
            return super().unified(venue_symbol, frame)
        self._unified[venue_symbol] = guess
        return guess

    def handle(self, frame: str | bytes, recv_ts: int) -> None:
        try:
            head = topic_decoder.decode(frame)
        except msgspec.DecodeError as exc:
            self._unreadable(frame, str(exc), recv_ts)
            return
        topic = head.topic
        if topic.startswith("orderbook."):
            try:
                msg = book_decoder.decode(frame)
            except msgspec.DecodeError as exc:
                self._unreadable(frame, str(exc), recv_ts)
                return
            self._book(msg, frame, recv_ts)
        elif topic.startswith("publicTrade."):
            try:
                trades = trade_decoder.decode(frame).data
            except msgspec.DecodeError as exc:
                self.errors("invalid publicTrade", frame, str(exc))
                return
            for t in trades:
                if t.BT:
                    self.ignored["block trade"] += 1
                elif t.p > 0 and t.v > 0:
                    self.sink.trade(t.to_trade(self.exchange, self.unified(t.s, frame), recv_ts))
                else:
                    self.errors("invalid publicTrade", frame, "price and size must be positive numbers")
        elif topic:
            self.ignored[topic.split(".", 1)[0]] += 1
        elif head.op:
            if head.success:
                self.ignored[head.op] += 1
            else:
                self.errors("venue error", frame)
        else:
            self.errors("unrecognized", frame)

    def _unreadable(self, frame: str | bytes, why: str, recv_ts: int) -> None:
        text = frame if isinstance(frame, str) else frame.decode(errors="replace")
        m = _BOOK_SYMBOL.search(text[:200])
        if m is None:
            self.errors("unrecognized", frame, why)
            return
        self.errors("invalid orderbook", frame, why)
        symbol = self._unified.get(m.group(1))
        if symbol is not None and self.live(symbol) is not None:
            self.lost(m.group(1), f"unreadable orderbook message ({why})", recv_ts)

    def _book(self, msg, frame: str | bytes, recv_ts: int) -> None:  # type: ignore[no-untyped-def]
        data = msg.data
        symbol = self.unified(data.s, frame)
        ts = (msg.cts or msg.ts) * MS
        if msg.type == "snapshot":
            self.publish_snapshot(data.s, symbol, data.b, data.a, data.u, ts, recv_ts)
            return
        book = self.live(symbol)
        if book is None:
            self.ignored["delta before snapshot"] += 1
            return
        if data.u != book.seq + 1:
            if data.u <= book.seq:
                self.ignored["delta already applied"] += 1
                return
            self.lost(data.s, f"expected u={book.seq + 1}, got u={data.u}", recv_ts)
            return
        book.apply(data.b, data.a, data.u, ts)
        self.publish_delta(book, data.b, data.a, data.u, ts, recv_ts)


class BybitConnector(Connector):
    """One v5 public connection: subscribe frames of at most 10 topics; ``{"op":"ping"}`` every 20 s."""

    heartbeat_interval_s = PING_INTERVAL_S

    def ws_url(self) -> str:
        return self.venue.base_url_ws.rstrip("/") + WS_PATH

    def heartbeat_frame(self) -> str | None:
        return '{"op":"ping"}'

    def _book_topic(self, symbol: str) -> str:
        return f"orderbook.{book_depth(self.venue.snapshot_limit)}.{symbol}"

    def subscribe_frames(self) -> Sequence[str]:
        topics = []
        for unified in self.venue.symbols:
            symbol = self.feed.symbols.venue(unified, self.exchange)
            if self.venue.trades:
                topics.append(f"publicTrade.{symbol}")
            if self.venue.book:
                topics.append(self._book_topic(symbol))
        return [json.dumps({"op": "subscribe", "args": chunk}) for chunk in chunked(topics, MAX_ARGS_PER_SUBSCRIBE)]

    def resync_frames(self, venue_symbol: str) -> Sequence[str]:
        return [json.dumps({"op": op, "args": [self._book_topic(venue_symbol)]}) for op in ("unsubscribe", "subscribe")]
