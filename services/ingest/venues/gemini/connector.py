"""Gemini v2 market data: trades and L2 books from one ``l2`` subscription.

Book rule: the first ``l2_updates`` after subscribing (the one carrying ``trades``) is the whole
book; later ones set absolute quantities. Gemini v2 sends no sequence numbers, so an update the
feed cannot read is the detectable loss: ``md:status`` gap, the book dropped, unsubscribe +
subscribe (the whole book comes again), ``md:status`` resynced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import msgspec

from services.ingest.connector import Connector, chunked
from services.ingest.venues.gemini.config import CHANNEL, MAX_SYMBOLS_PER_SUBSCRIBE, WS_PATH
from services.ingest.venues.gemini.schemas import Heartbeat, L2Updates, TradeMessage, decoder
from services.ingest.venues.subscribed import ResyncFeed

_L2_SYMBOL = re.compile(r'^\{"type":"l2_updates","symbol":"([A-Z0-9]+)"')


class GeminiFeed(ResyncFeed):
    """Frames of one Gemini v2 connection -> trades and books."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._updates: dict[str, int] = {}

    def handle(self, frame: str | bytes, recv_ts: int) -> None:
        try:
            msg = decoder.decode(frame)
        except msgspec.DecodeError as exc:
            self._other(frame, str(exc), recv_ts)
            return
        if type(msg) is L2Updates:
            self._l2(msg, frame, recv_ts)
        elif type(msg) is TradeMessage:
            if msg.price > 0 and msg.quantity > 0:
                self.sink.trade(msg.to_trade(self.exchange, self.unified(msg.symbol, frame), recv_ts))
            else:
                self.errors("invalid trade", frame, "price and quantity must be positive numbers")
        elif type(msg) is Heartbeat:
            self.ignored["heartbeat"] += 1

    def _l2(self, msg: L2Updates, frame: str | bytes, recv_ts: int) -> None:
        symbol = self.unified(msg.symbol, frame)
        bids = [(p, q) for side, p, q in msg.changes if side == "buy"]
        asks = [(p, q) for side, p, q in msg.changes if side == "sell"]
        if msg.trades is not None:  # the whole book, sent on subscribing
            self._updates[msg.symbol] = 0
            self.publish_snapshot(msg.symbol, symbol, bids, asks, 0, recv_ts, recv_ts)
            return
        book = self.live(symbol)
        if book is None:
            self.ignored["l2_updates before the book"] += 1
            return
        seq = self._updates[msg.symbol] = self._updates.get(msg.symbol, 0) + 1
        book.apply(bids, asks, seq, recv_ts)
        self.publish_delta(book, bids, asks, seq, recv_ts, recv_ts)

    def _other(self, frame: str | bytes, why: str, recv_ts: int) -> None:
        text = frame if isinstance(frame, str) else frame.decode(errors="replace")
        m = _L2_SYMBOL.match(text)
        if m is not None:
            self.errors("invalid l2_updates", frame, why)
            symbol = self._unified.get(m.group(1))
            if symbol is not None and self.live(symbol) is not None:
                self.lost(m.group(1), f"unreadable l2_updates ({why})", recv_ts)
            return
        try:
            obj = msgspec.json.decode(frame)
        except msgspec.DecodeError as exc:
            self.errors("not JSON", frame, str(exc))
            return
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind in ("l2_updates", "trade"):
            self.errors(f"invalid {kind}", frame, why)
        elif isinstance(kind, str) and kind.startswith(("candles", "auction")):
            self.ignored[kind] += 1
        elif kind == "error" or (isinstance(obj, dict) and obj.get("result") == "error"):
            self.errors("venue error", frame)
        else:
            self.errors("unrecognized", frame, why)


class GeminiConnector(Connector):
    """One v2 connection: an ``l2`` subscription covers a symbol's book and its trades."""

    def ws_url(self) -> str:
        return self.venue.base_url_ws.rstrip("/") + WS_PATH

    def subscribe_frames(self) -> Sequence[str]:
        symbols = [self.feed.symbols.venue(s, self.exchange) for s in self.venue.symbols]
        return [
            json.dumps({"type": "subscribe", "subscriptions": [{"name": CHANNEL, "symbols": chunk}]})
            for chunk in chunked(symbols, MAX_SYMBOLS_PER_SUBSCRIBE)
        ]

    def resync_frames(self, venue_symbol: str) -> Sequence[str]:
        sub = [{"name": CHANNEL, "symbols": [venue_symbol]}]
        return [json.dumps({"type": kind, "subscriptions": sub}) for kind in ("unsubscribe", "subscribe")]
