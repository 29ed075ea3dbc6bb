"""Bitfinex v2: trades and L2 books (``book`` P0), with the SEQ_ALL connection sequence.

Sequence rule: with the SEQ_ALL flag every data frame (heartbeats too) ends with the
connection's sequence number, each the previous + 1. A jump means frames were lost, and since
the number is per connection, not per channel, every book on it is suspect: ``md:status`` gap
for each, the books dropped, each book channel unsubscribed and subscribed again (Bitfinex
then sends a new snapshot), ``md:status`` resynced per book.

Checksum rule: the connector also asks for the OB_CHECKSUM flag; each ``[chanId, "cs", n]`` frame
must equal the CRC32 of the book's best 25 levels (``schemas.book_checksum``), else that book
gaps and is resubscribed. Captures made without the flag simply have no checksum frames.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec

from services.ingest.connector import Connector
from services.ingest.venues.bitfinex.config import (
    BOOK_FREQUENCY,
    BOOK_PRECISION,
    CHECKSUM_LEVELS,
    CONF_FLAGS,
    OB_CHECKSUM,
    SEQ_ALL,
    WS_PATH,
    book_length,
)
from services.ingest.venues.bitfinex.schemas import book_checksum, book_levels, event_decoder, trade_of
from services.ingest.venues.subscribed import ResyncFeed


class BitfinexFeed(ResyncFeed):
    """Frames of one Bitfinex v2 connection -> trades and books."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.channels: dict[int, tuple[str, str]] = {}  # chanId -> (channel, venue symbol)
        self.book_chan: dict[str, int] = {}  # venue symbol -> its book chanId
        self.sequenced = False
        self.checksummed = False  # the venue confirmed the OB_CHECKSUM flag
        self.verified = 0  # checksums that matched (tests and metrics)
        self._seq: int | None = None

    def handle(self, frame: str | bytes, recv_ts: int) -> None:
        try:
            msg = msgspec.json.decode(frame)
        except msgspec.DecodeError as exc:
            self.errors("not JSON", frame, str(exc))
            return
        if isinstance(msg, dict):
            self._event(frame, recv_ts)
        elif isinstance(msg, list) and len(msg) >= 2 and isinstance(msg[0], int):
            self._data(msg, frame, recv_ts)
        else:
            self.errors("unrecognized", frame, "expected an event object or [chanId, ...]")

    def _event(self, frame: str | bytes, recv_ts: int) -> None:
        try:
            event = event_decoder.decode(frame)
        except msgspec.DecodeError as exc:
            self.errors("unrecognized", frame, str(exc))
            return
        if event.event == "subscribed":
            self.channels[event.chanId] = (event.channel, event.symbol)
            if event.channel == "book":
                self.book_chan[event.symbol] = event.chanId
        elif event.event == "unsubscribed":
            self.channels.pop(event.chanId, None)
        elif event.event == "conf":
            self.sequenced = event.status == "OK" and bool(event.flags & SEQ_ALL)
            self.checksummed = event.status == "OK" and bool(event.flags & OB_CHECKSUM)
            self._seq = None
        elif event.event == "error":
            self.errors("venue error", frame)
        self.ignored[event.event] += 1

    def _data(self, msg: list, frame: str | bytes, recv_ts: int) -> None:
        if self.sequenced:
            seq = msg[-1]
            if not isinstance(seq, int) or isinstance(seq, bool):
                self.errors("unrecognized", frame, "SEQ_ALL is on but the frame ends without a sequence number")
                return
            if self._seq is not None and seq != self._seq + 1:
                detail = f"connection sequence jumped from {self._seq} to {seq}"
                for venue_symbol in list(self.book_chan):
                    symbol = self._unified.get(venue_symbol)
                    if symbol is not None and self.live(symbol) is not None:
                        self.lost(venue_symbol, detail, recv_ts)
            self._seq = seq
            msg = msg[:-1]
            if len(msg) < 2:
                self.errors("unrecognized", frame, "no payload between chanId and the sequence number")
                return
        channel, venue_symbol = self.channels.get(msg[0], ("", ""))
        payload = msg[1]
        if payload == "hb":
            self.ignored["hb"] += 1
        elif payload == "cs" and channel == "book":
            self._checksum(venue_symbol, msg, frame, recv_ts)
        elif channel == "book":
            self._book(venue_symbol, payload, frame, recv_ts)
        elif channel == "trades":
            self._trade(venue_symbol, msg, frame, recv_ts)
        elif channel:
            self.ignored[channel] += 1
        else:
            self.errors("unknown channel", frame, f"chanId {msg[0]} was never subscribed")

    def _book(self, venue_symbol: str, payload: object, frame: str | bytes, recv_ts: int) -> None:
        symbol = self.unified(venue_symbol, frame)
        try:
            if not isinstance(payload, list) or not payload:
                raise ValueError("expected [price, count, amount] or a list of them")
            snapshot = isinstance(payload[0], list)
            bids, asks = book_levels(payload if snapshot else [payload])
        except (ValueError, TypeError) as exc:
            self.errors("invalid book", frame, str(exc))
            if self.live(symbol) is not None:
                self.lost(venue_symbol, f"unreadable book update ({exc})", recv_ts)
            return
        if snapshot:
            self.publish_snapshot(venue_symbol, symbol, bids, asks, self._seq or 0, recv_ts, recv_ts)
            return
        book = self.live(symbol)
        if book is None:
            self.ignored["book update before snapshot"] += 1
            return
        book.apply(bids, asks, self._seq if self._seq is not None else book.seq + 1, recv_ts)
        self.publish_delta(book, bids, asks, book.seq, recv_ts, recv_ts)

    def _checksum(self, venue_symbol: str, msg: list, frame: str | bytes, recv_ts: int) -> None:
        """``[chanId, "cs", checksum]``: the book's best 25 levels must give the same CRC32."""
        want = msg[2] if len(msg) > 2 else None
        if type(want) is not int:
            self.errors("invalid checksum", frame, 'expected [chanId, "cs", signed 32-bit integer]')
            return
        book = self.live(self.unified(venue_symbol, frame))
        if book is None:
            self.ignored["checksum of a book not in sync"] += 1
            return
        bids, asks = book.top(CHECKSUM_LEVELS)
        actual = book_checksum(bids, asks)
        if actual != want:
            self.lost(venue_symbol, f"checksum mismatch: book gives {actual}, Bitfinex says {want}", recv_ts)
            return
        self.verified += 1

    def _trade(self, venue_symbol: str, msg: list, frame: str | bytes, recv_ts: int) -> None:
        kind = msg[1]
        if kind == "tu" or (isinstance(kind, list) and (not kind or isinstance(kind[0], list))):
            self.ignored["trades already published" if kind == "tu" else "trades snapshot"] += 1
            return
        try:
            if kind != "te":
                raise ValueError(f"unknown trades message {kind!r}")
            trade = trade_of(msg[2], self.exchange, self.unified(venue_symbol, frame), recv_ts)
        except (ValueError, TypeError, IndexError) as exc:
            self.errors("invalid trade", frame, str(exc))
            return
        if trade.price > 0 and trade.amount > 0:
            self.sink.trade(trade)
        else:
            self.errors("invalid trade", frame, "price and amount must be non-zero")

    def reset(self) -> None:
        super().reset()
        self.channels.clear()
        self.book_chan.clear()
        self._seq = None


class BitfinexConnector(Connector):
    """One connection: the ``conf`` event (SEQ_ALL, OB_CHECKSUM), then a ``subscribe`` event per channel."""

    def ws_url(self) -> str:
        return self.venue.base_url_ws.rstrip("/") + WS_PATH

    def _book_request(self, symbol: str) -> dict[str, str]:
        return {"event": "subscribe", "channel": "book", "symbol": symbol, "prec": BOOK_PRECISION,
                "freq": BOOK_FREQUENCY, "len": book_length(self.venue.snapshot_limit)}  # fmt: skip

    def subscribe_frames(self) -> Sequence[str]:
        frames = [json.dumps({"event": "conf", "flags": CONF_FLAGS})]
        for unified in self.venue.symbols:
            symbol = self.feed.symbols.venue(unified, self.exchange)
            if self.venue.trades:
                frames.append(json.dumps({"event": "subscribe", "channel": "trades", "symbol": symbol}))
            if self.venue.book:
                frames.append(json.dumps(self._book_request(symbol)))
        return frames

    def resync_frames(self, venue_symbol: str) -> Sequence[str]:
        chan = getattr(self.feed, "book_chan", {}).get(venue_symbol)
        unsubscribe = [json.dumps({"event": "unsubscribe", "chanId": chan})] if chan is not None else []
        return [*unsubscribe, json.dumps(self._book_request(venue_symbol))]
