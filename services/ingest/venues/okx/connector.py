"""OKX v5: trades and L2 books (``books``) with checksum and sequence checks.

Book rule (OKX "order book checksum" and "seqId" docs): a snapshot replaces the book; each
update's ``prevSeqId`` must equal the ``seqId`` of the message before it (when OKX sends them),
its levels are applied (size "0" deletes), then the signed CRC32 over the best 25 levels per
side, interleaved ``bid:ask``, must equal ``checksum``. Otherwise: ``md:status`` gap, the book
dropped, unsubscribe + subscribe (a new snapshot comes), ``md:status`` resynced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import msgspec

from services.ingest.connector import Connector, chunked
from services.ingest.venues.okx.config import (
    BOOK_CHANNEL,
    BOOK_CHANNELS,
    CHECKSUM_LEVELS,
    MAX_ARGS_PER_SUBSCRIBE,
    PING_INTERVAL_S,
    TRADE_CHANNEL,
    WS_PATH,
)
from services.ingest.venues.okx.schemas import (
    MS,
    BookData,
    Push,
    book_decoder,
    checksum,
    event_decoder,
    push_decoder,
    trades_decoder,
)
from services.ingest.venues.subscribed import ResyncFeed

_BOOK_INST = re.compile(r'^\{"arg":\{"channel":"books[^"]*","instId":"([^"]+)"')


class OkxFeed(ResyncFeed):
    """Frames of one OKX public connection -> trades and verified books."""

    keep_text = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.verified = 0
        self._seq: dict[str, int | None] = {}  # instId -> seqId of the last book message

    def handle(self, frame: str | bytes, recv_ts: int) -> None:
        if frame == "pong":
            self.ignored["pong"] += 1
            return
        try:
            push = push_decoder.decode(frame)
        except msgspec.DecodeError:
            self._other(frame, recv_ts)
            return
        channel, inst = push.arg.channel, push.arg.instId
        if channel == TRADE_CHANNEL:
            self._trades(push, frame, recv_ts)
        elif channel in BOOK_CHANNELS:
            for raw in push.data:
                try:
                    data = book_decoder.decode(raw)
                except msgspec.DecodeError as exc:
                    self.errors("invalid book", frame, str(exc))
                    if inst in self._unified and self.live(self._unified[inst]) is not None:
                        self.lost(inst, f"unreadable book update ({exc})", recv_ts)
                    return
                self._book(inst, push.action, data, frame, recv_ts)
        else:
            self.ignored[channel] += 1

    def _other(self, frame: str | bytes, recv_ts: int) -> None:
        try:
            event = event_decoder.decode(frame)
        except msgspec.DecodeError as exc:
            self.errors("unrecognized", frame, str(exc))
            m = _BOOK_INST.search(frame if isinstance(frame, str) else frame.decode(errors="replace"))
            if m and m.group(1) in self._unified and self.live(self._unified[m.group(1)]) is not None:
                self.lost(m.group(1), f"unreadable book frame ({exc})", recv_ts)  # a book frame we lost
            return
        if event.event == "error":
            self.errors("venue error", frame)
        else:
            self.ignored[event.event] += 1

    def _trades(self, push: Push, frame: str | bytes, recv_ts: int) -> None:
        for raw in push.data:
            try:
                t = trades_decoder.decode(raw)
            except msgspec.DecodeError as exc:
                self.errors("invalid trade", frame, str(exc))
                continue
            if t.px > 0 and t.sz > 0:
                self.sink.trade(t.to_trade(self.exchange, self.unified(t.instId, frame), recv_ts))
            else:
                self.errors("invalid trade", frame, "price and size must be positive numbers")

    def _book(self, inst: str, action: str, data: BookData, frame: str | bytes, recv_ts: int) -> None:
        try:
            bids, asks = data.text_levels()
            bid_levels = [(float(p), float(s)) for p, s in bids]
            ask_levels = [(float(p), float(s)) for p, s in asks]
            ts = int(data.ts) * MS
        except (ValueError, IndexError) as exc:
            self.errors("invalid book", frame, str(exc))
            if inst in self._unified and self.live(self._unified[inst]) is not None:
                self.lost(inst, f"unreadable book update ({exc})", recv_ts)
            return
        symbol = self.unified(inst, frame)
        if action == "snapshot":
            book = self.publish_snapshot(inst, symbol, bid_levels, ask_levels, data.seqId or 0, ts, recv_ts,
                                         text=(bids, asks))  # fmt: skip
            self._seq[inst] = data.seqId
            self._verify(inst, book, data, recv_ts)
            return
        live = self.live(symbol)
        if live is None:
            self.ignored["book update before snapshot"] += 1
            return
        book = live
        last = self._seq.get(inst)
        if data.prevSeqId is not None and last is not None:
            if data.seqId is not None and data.seqId <= last and data.prevSeqId < last:
                self.ignored["book update already applied"] += 1
                return
            if data.prevSeqId != last:
                self.lost(inst, f"expected prevSeqId={last}, got prevSeqId={data.prevSeqId}", recv_ts)
                return
        self._seq[inst] = data.seqId
        book.apply_text(bids, asks, data.seqId if data.seqId is not None else book.seq + 1, ts)
        if self._verify(inst, book, data, recv_ts):
            self.publish_delta(book, bid_levels, ask_levels, book.seq, ts, recv_ts)

    def _verify(self, inst: str, book, data: BookData, recv_ts: int) -> bool:  # type: ignore[no-untyped-def]
        if data.checksum is None:
            return True
        top_bids, top_asks = book.top_text(CHECKSUM_LEVELS)
        actual = checksum(top_bids, top_asks)
        if actual != data.checksum:
            self.lost(inst, f"checksum mismatch: book gives {actual}, OKX says {data.checksum}", recv_ts)
            return False
        self.verified += 1
        return True


class OkxConnector(Connector):
    """One public connection: ``subscribe`` frames of at most 100 args; "ping" every 25 s."""

    heartbeat_interval_s = PING_INTERVAL_S

    def ws_url(self) -> str:
        return self.venue.base_url_ws.rstrip("/") + WS_PATH

    def heartbeat_frame(self) -> str | None:
        return "ping"

    def subscribe_frames(self) -> Sequence[str]:
        args = []
        for unified in self.venue.symbols:
            inst = self.feed.symbols.venue(unified, self.exchange)
            if self.venue.trades:
                args.append({"channel": TRADE_CHANNEL, "instId": inst})
            if self.venue.book:
                args.append({"channel": BOOK_CHANNEL, "instId": inst})
        return [json.dumps({"op": "subscribe", "args": chunk}) for chunk in chunked(args, MAX_ARGS_PER_SUBSCRIBE)]

    def resync_frames(self, venue_symbol: str) -> Sequence[str]:
        arg = {"channel": BOOK_CHANNEL, "instId": venue_symbol}
        return [json.dumps({"op": op, "args": [arg]}) for op in ("unsubscribe", "subscribe")]
