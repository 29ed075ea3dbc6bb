"""Bitstamp v2: trades (``live_trades_``) and full L2 books (``diff_order_book_`` + REST snapshot).

Book rule (Bitstamp's "how to maintain an order book"): subscribe to the diffs, buffer them,
fetch ``GET /api/v2/order_book/<pair>/``, drop the diffs whose ``microtimestamp`` is not after
the snapshot's and apply the rest in order. Bitstamp sends no sequence numbers, so a diff the
feed cannot read is the only detectable loss: ``md:status`` gap, the book dropped, a new REST
snapshot, ``md:status`` resynced.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence

import msgspec

from services.ingest.connector import Connector
from services.ingest.venues.bitstamp.config import BOOK_CHANNEL, SNAPSHOT_PATH, SUBSCRIBE_PAUSE_S, TRADE_CHANNEL
from services.ingest.venues.bitstamp.schemas import (
    US,
    BookData,
    book_decoder,
    envelope_decoder,
    snapshot_decoder,
    trade_decoder,
)
from services.ingest.venues.subscribed import ResyncFeed

_IGNORED = frozenset({"bts:subscription_succeeded", "bts:unsubscription_succeeded", "bts:heartbeat"})


class BitstampFeed(ResyncFeed):
    """Frames of one Bitstamp connection (and REST snapshots) -> trades and books."""

    snapshot_retry_s = 1.0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._buffers: dict[str, deque[tuple[BookData, int]]] = {}
        self._requested: set[str] = set()
        self._newest: dict[str, int] = {}  # microtimestamp of the newest diff seen per pair
        self._not_before: dict[str, int] = {}  # after a loss: a snapshot must be newer than this

    def handle(self, frame: str | bytes, recv_ts: int) -> None:
        try:
            head = envelope_decoder.decode(frame)
        except msgspec.DecodeError as exc:
            self.errors("not JSON", frame, str(exc))
            return
        channel, event = head.channel, head.event
        if event == "data" and channel.startswith(BOOK_CHANNEL):
            pair = channel[len(BOOK_CHANNEL) :]
            try:
                data = book_decoder.decode(frame).data
            except msgspec.DecodeError as exc:
                self.errors("invalid diff_order_book", frame, str(exc))
                if pair in self._unified and (pair in self._buffers or self.live(self._unified[pair]) is not None):
                    self.lost(pair, f"unreadable diff ({exc})", recv_ts)
                return
            self._diff(pair, data, frame, recv_ts)
        elif event == "trade" and channel.startswith(TRADE_CHANNEL):
            try:
                t = trade_decoder.decode(frame).data
            except msgspec.DecodeError as exc:
                self.errors("invalid live_trades", frame, str(exc))
                return
            if t.price_str > 0 and t.amount_str > 0:
                pair = channel[len(TRADE_CHANNEL) :]
                self.sink.trade(t.to_trade(self.exchange, self.unified(pair, frame), recv_ts))
            else:
                self.errors("invalid live_trades", frame, "price and amount must be positive numbers")
        elif event in _IGNORED or event == "data":
            self.ignored[event if event != "data" else channel.rsplit("_", 1)[0]] += 1
        elif event == "bts:request_reconnect":
            self.ignored[event] += 1  # the stale/reconnect logic of the connector handles it
        elif event == "bts:error":
            self.errors("venue error", frame)
        else:
            self.errors("unrecognized", frame)

    def _diff(self, pair: str, data: BookData, frame: str | bytes, recv_ts: int) -> None:
        symbol = self.unified(pair, frame)
        self._newest[pair] = max(self._newest.get(pair, 0), data.microtimestamp)
        book = self.live(symbol)
        if book is None:
            buffer = self._buffers.setdefault(pair, deque())
            buffer.append((data, recv_ts))
            if len(buffer) > self.max_buffered:
                buffer.popleft()
            if pair not in self._requested:
                self._requested.add(pair)
                self.ask_snapshot(pair)
            return
        if data.microtimestamp <= book.seq:
            self.ignored["diff older than the book"] += 1
            return
        self._apply(book, data, recv_ts)

    def _apply(self, book, data: BookData, recv_ts: int) -> None:  # type: ignore[no-untyped-def]
        ts = data.microtimestamp * US
        book.apply(data.bids, data.asks, data.microtimestamp, ts)
        self.publish_delta(book, data.bids, data.asks, data.microtimestamp, ts, recv_ts)

    def handle_snapshot(self, venue_symbol: str, body: str | bytes, recv_ts: int) -> None:
        self._requested.discard(venue_symbol)
        try:
            snap = snapshot_decoder.decode(body)
        except msgspec.DecodeError as exc:
            self.errors("invalid order_book snapshot", body, str(exc))
            self._requested.add(venue_symbol)
            self.ask_snapshot(venue_symbol, self.snapshot_retry_s)
            return
        symbol = self.unified(venue_symbol, body)
        mt = snap.microtimestamp
        if mt <= self._not_before.get(venue_symbol, -1):  # taken before the lost diff: useless
            self._requested.add(venue_symbol)
            self.ask_snapshot(venue_symbol, self.snapshot_retry_s)
            return
        self._not_before.pop(venue_symbol, None)
        book = self.publish_snapshot(venue_symbol, symbol, snap.bids, snap.asks, mt, mt * US, recv_ts)
        for data, ts in self._buffers.pop(venue_symbol, ()):
            if data.microtimestamp > book.seq:
                self._apply(book, data, ts)

    def lost(self, venue_symbol: str, detail: str, ts: int) -> None:
        self._buffers.pop(venue_symbol, None)
        self._not_before[venue_symbol] = self._newest.get(venue_symbol, 0)
        if venue_symbol not in self.resyncing:
            self._requested.add(venue_symbol)
        super().lost(venue_symbol, detail, ts)

    def reset(self) -> None:
        super().reset()
        self._buffers.clear()
        self._requested.clear()
        self._not_before.clear()


class BitstampConnector(Connector):
    """One connection: a ``bts:subscribe`` event per channel; REST snapshots for the books."""

    subscribe_pause_s = SUBSCRIBE_PAUSE_S

    def __init__(self, feed: BitstampFeed, *args: object, **kwargs: object) -> None:
        super().__init__(feed, *args, **kwargs)  # type: ignore[arg-type]
        feed.snapshot_retry_s = self.settings.snapshot_retry_s

    def ws_url(self) -> str:
        return self.venue.base_url_ws

    def subscribe_frames(self) -> Sequence[str]:
        frames = []
        for unified in self.venue.symbols:
            pair = self.feed.symbols.venue(unified, self.exchange)
            for wanted, prefix in ((self.venue.trades, TRADE_CHANNEL), (self.venue.book, BOOK_CHANNEL)):
                if wanted:
                    frames.append(json.dumps({"event": "bts:subscribe", "data": {"channel": prefix + pair}}))
        return frames

    def snapshot_url(self, venue_symbol: str) -> str | None:
        return self.venue.base_url_http.rstrip("/") + SNAPSHOT_PATH.format(pair=venue_symbol)
