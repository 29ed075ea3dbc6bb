"""Binance spot, Binance.US and USD-M futures: trades and diff-depth books over one base.

Book sync follows Binance's documented procedure: buffer ``depthUpdate`` events, fetch a REST
snapshot, drop events with ``u`` <= ``lastUpdateId`` (futures: ``u`` < ``lastUpdateId``), the
first event applied must straddle the snapshot (spot ``U`` <= lastUpdateId+1 <= ``u``; futures
``U`` <= lastUpdateId <= ``u``), and from then on every event must follow the previous one (spot
``U`` = previous ``u`` + 1; futures ``pu`` = previous ``u``). Anything else is a gap: status gap,
book dropped, new snapshot, status resynced. Nothing is published for a book between its gap
and its resync.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence

import msgspec

from services.ingest.connector import Connector, chunked
from services.ingest.feed import Feed, FrameErrors, Sink, SymbolMap
from services.ingest.venues.binance.config import DEPTH_CHANNEL, TRADE_CHANNELS, BinanceSpec
from services.ingest.venues.binance.schemas import (
    MS,
    AggTradeEvent,
    DepthEvent,
    DepthSnapshot,
    TradeEvent,
    envelope_decoder,
    event_decoder,
    snapshot_decoder,
)
from services.ingest.venues.binance.symbols import guess_unified
from shared.schemas import Trade
from shared.schemas.messages import Side
from shared.sections.ingest import VenueSettings

_decode = envelope_decoder.decode


class _Depth:
    """Sequence state of one symbol's book."""

    __slots__ = ("buffer", "gapped", "last_u", "requested", "snapshot", "snapshot_ts", "synced")

    def __init__(self) -> None:
        self.synced = False
        self.buffer: deque[tuple[DepthEvent, int]] = deque()
        self.snapshot: DepthSnapshot | None = None
        self.snapshot_ts = 0
        self.requested = False
        self.gapped = False
        self.last_u = -1


class BinanceFeed(Feed):
    """Frames of a combined-stream connection -> trades and books."""

    snapshot_retry_s = 1.0

    def __init__(
        self, spec: BinanceSpec, symbols: SymbolMap, sink: Sink, errors: FrameErrors | None = None, **kwargs: object
    ) -> None:
        super().__init__(spec.exchange, symbols, sink, errors, **kwargs)  # type: ignore[arg-type]
        self.spec = spec
        self.futures = spec.sequence == "futures"
        self._depth: dict[str, _Depth] = {}
        self._unified: dict[str, str] = dict(symbols.to_unified)
        self._last_depth_symbol: str | None = None
        self._trade = sink.trade

    # -- frames --------------------------------------------------------------------------------

    def on_frame(self, frame: str | bytes, recv_ts: int) -> None:
        """The base class's guarded ``on_frame`` with the hot path inlined (one call per trade)."""
        self.frames += 1
        try:
            try:
                event = _decode(frame).data
            except msgspec.DecodeError:
                self._other(frame, recv_ts)
                return
            if type(event) is DepthEvent:
                self._on_depth(event, recv_ts, frame)
            elif type(event) is TradeEvent and event.p > 0 and event.q > 0 and event.X == "MARKET":
                symbol = self._unified.get(event.s) or self._unknown(event.s, frame)
                side: Side = "sell" if event.m else "buy"
                self._trade(Trade(self.exchange, symbol, str(event.t), event.p, event.q, side, event.T * MS, recv_ts))
            else:
                self._event(event, recv_ts, frame)
        except Exception as exc:  # the guarantee: a bad frame never takes the connector down
            self.errors(f"unexpected {type(exc).__name__}", frame, str(exc)[:200])

    def handle(self, frame: str | bytes, recv_ts: int) -> None:
        try:
            event = envelope_decoder.decode(frame).data
        except msgspec.DecodeError:
            self._other(frame, recv_ts)
            return
        self._event(event, recv_ts, frame)

    def _event(self, event: TradeEvent | AggTradeEvent | DepthEvent, recv_ts: int, frame: str | bytes) -> None:
        if isinstance(event, DepthEvent):
            self._on_depth(event, recv_ts, frame)
            return
        symbol = self._unified.get(event.s) or self._unknown(event.s, frame)
        if not (event.p > 0 and event.q > 0):  # also false for NaN
            self.errors("invalid trade", frame, "price and quantity must be positive numbers")
        elif type(event) is TradeEvent and event.X != "MARKET":
            self.ignored[f"trade X={event.X}"] += 1
        else:
            self.sink.trade(event.to_trade(self.exchange, symbol, recv_ts))

    def _other(self, frame: str | bytes, recv_ts: int) -> None:
        """Everything but a well-formed trade/depth envelope: replies, other channels, errors."""
        try:
            obj = msgspec.json.decode(frame)
        except (msgspec.DecodeError, RecursionError) as exc:  # RecursionError: nested deeper than msgspec goes
            self.errors("not JSON", frame, str(exc))
            return
        if not isinstance(obj, dict):
            self.errors("unrecognized", frame, f"expected a JSON object, got {type(obj).__name__}")
            return
        stream = obj.get("stream")
        if isinstance(stream, str) and "data" in obj:
            channel = stream.partition("@")[2].partition("@")[0]
            if channel in TRADE_CHANNELS or channel == DEPTH_CHANNEL:
                self.errors(f"invalid {channel}", frame, _why(obj["data"]))
            else:
                self.ignored[channel or stream] += 1
        elif "e" in obj:  # a raw (non-combined) stream frame
            try:
                event = event_decoder.decode(frame)
            except msgspec.DecodeError as exc:
                kind = obj["e"] if obj["e"] in ("trade", "aggTrade", "depthUpdate") else "unrecognized event"
                if kind == "unrecognized event" and isinstance(obj["e"], str):
                    self.ignored[obj["e"]] += 1
                else:
                    self.errors(f"invalid {kind}", frame, str(exc))
                return
            self._event(event, recv_ts, frame)
        elif "lastUpdateId" in obj:  # a REST snapshot recorded in-stream (hftbacktest captures)
            if self._last_depth_symbol is None:
                self.errors("snapshot before any depth event", frame)
            else:
                self.handle_snapshot(self._last_depth_symbol, frame, recv_ts)
        elif "result" in obj and "id" in obj:
            self.ignored["reply"] += 1
        elif "code" in obj and "msg" in obj:
            self.errors("venue error", frame)
        else:
            self.errors("unrecognized", frame)

    def _unknown(self, venue_symbol: str, frame: str | bytes) -> str:
        unified = guess_unified(venue_symbol) or venue_symbol
        self._unified[venue_symbol] = unified
        self.errors("symbol not in market list", frame, f"{venue_symbol!r} published as {unified!r}")
        return unified

    # -- books ---------------------------------------------------------------------------------

    def _on_depth(self, event: DepthEvent, recv_ts: int, frame: str | bytes) -> None:
        venue_symbol = event.s
        state = self._depth.get(venue_symbol)
        if state is None:
            state = self._depth[venue_symbol] = _Depth()
        self._last_depth_symbol = venue_symbol
        if state.synced:
            last = state.last_u
            if (event.pu == last) if self.futures else (last + 1 == event.U):
                symbol = self._unified.get(venue_symbol) or self._unknown(venue_symbol, frame)
                self.books[symbol].apply(event.b, event.a, event.u, recv_ts)
                state.last_u = event.u
                self.sink.book(event.to_book(self.exchange, symbol, recv_ts))
                return
            if event.u <= last:  # an event from before the one applied last: Binance says drop it
                self.ignored["depth already applied"] += 1
                return
            expected = f"pu={last}" if self.futures else f"U={last + 1}"
            self._gap(venue_symbol, state, f"expected {expected}, got U={event.U} pu={event.pu} u={event.u}", recv_ts)
        state.buffer.append((event, recv_ts))
        if len(state.buffer) > self.max_buffered:
            state.buffer.popleft()
        if state.snapshot is not None:
            self._try_sync(venue_symbol, state, recv_ts)
        elif not state.requested:
            state.requested = True
            self.ask_snapshot(venue_symbol)

    def _gap(self, venue_symbol: str, state: _Depth, detail: str, ts: int) -> None:
        symbol = self._unified.get(venue_symbol, venue_symbol)
        state.synced = False
        state.gapped = True
        state.snapshot = None
        state.buffer.clear()
        self.gap(symbol, f"{venue_symbol}: {detail}", ts)
        state.requested = True
        self.ask_snapshot(venue_symbol)

    def handle_snapshot(self, venue_symbol: str, body: str | bytes, recv_ts: int) -> None:
        state = self._depth.get(venue_symbol)
        if state is None:
            state = self._depth[venue_symbol] = _Depth()
        state.requested = False
        try:
            snapshot = snapshot_decoder.decode(body)
        except msgspec.DecodeError as exc:
            self.errors("invalid depth snapshot", body, str(exc))
            if not state.synced:
                state.requested = True
                self.ask_snapshot(venue_symbol, self.snapshot_retry_s)
            return
        if state.synced:
            return  # already in sequence; an extra snapshot adds nothing
        state.snapshot = snapshot
        state.snapshot_ts = recv_ts
        self._try_sync(venue_symbol, state, recv_ts)

    def _try_sync(self, venue_symbol: str, state: _Depth, recv_ts: int) -> None:
        snapshot = state.snapshot
        assert snapshot is not None
        lid = snapshot.lastUpdateId
        buffer = state.buffer
        if self.futures:
            while buffer and buffer[0][0].u < lid:
                buffer.popleft()
        else:
            while buffer and buffer[0][0].u <= lid:
                buffer.popleft()
        if not buffer:
            return  # the snapshot is ahead of every event so far: wait for the one that straddles it
        first = buffer[0][0]
        straddles = (first.U <= lid <= first.u) if self.futures else (first.U <= lid + 1 <= first.u)
        if not straddles:  # the snapshot is older than the oldest event kept: ask for a newer one
            state.snapshot = None
            state.requested = True
            self.ask_snapshot(venue_symbol, self.snapshot_retry_s)
            return
        symbol = self._unified.get(venue_symbol) or self._unknown(venue_symbol, b"")
        book = self.book_of(symbol)
        book.load(snapshot.bids, snapshot.asks, lid, state.snapshot_ts)
        self.sink.book(snapshot.to_book(self.exchange, symbol, state.snapshot_ts))
        last = -1
        while buffer:
            event, ts = buffer.popleft()
            if last >= 0 and not ((event.pu == last) if self.futures else (last + 1 == event.U)):
                buffer.appendleft((event, ts))
                pending = list(buffer)
                self._gap(venue_symbol, state, f"expected continuity after u={last}, got U={event.U}", ts)
                state.buffer.extend(pending)
                return
            book.apply(event.b, event.a, event.u, ts)
            self.sink.book(event.to_book(self.exchange, symbol, ts))
            last = event.u
        state.synced = True
        state.last_u = last
        state.snapshot = None
        if state.gapped:
            state.gapped = False
            self.status("resynced", symbol, f"{venue_symbol}: book rebuilt from snapshot lastUpdateId={lid}", recv_ts)

    def reset(self) -> None:
        super().reset()
        self._depth.clear()

    def synced(self, venue_symbol: str) -> bool:
        state = self._depth.get(venue_symbol)
        return bool(state and state.synced)


def _why(data: object) -> str:
    """The validation error of an envelope's ``data``, for the log line."""
    try:
        event_decoder.decode(msgspec.json.encode(data))
    except msgspec.DecodeError as exc:
        return str(exc)
    return "unexpected shape"


def depth_suffix(interval_ms: int) -> str:
    return "" if interval_ms >= 1000 else f"@{interval_ms}ms"


class BinanceConnector(Connector):
    """One combined-stream connection; subscribes with SUBSCRIBE frames, chunked and paced."""

    def __init__(self, spec: BinanceSpec, feed: BinanceFeed, venue: VenueSettings, *args: object, **kwargs: object):
        super().__init__(feed, venue, *args, **kwargs)  # type: ignore[arg-type]
        self.spec = spec
        self.subscribe_pause_s = 1.0 / spec.max_messages_per_second
        feed.snapshot_retry_s = self.settings.snapshot_retry_s

    def streams(self) -> list[str]:
        out = []
        symbols = self.feed.symbols
        for unified in self.venue.symbols:
            s = symbols.venue(unified, self.exchange).lower()
            if self.venue.trades:
                out.append(f"{s}@{self.venue.trade_channel}")
            if self.venue.book:
                out.append(f"{s}@depth{depth_suffix(self.venue.depth_interval_ms)}")
        return out

    def ws_url(self) -> str:
        return self.venue.base_url_ws.rstrip("/") + self.spec.ws_path

    def subscribe_frames(self) -> Sequence[str]:
        return [
            json.dumps({"method": "SUBSCRIBE", "params": chunk, "id": i})
            for i, chunk in enumerate(chunked(self.streams(), self.spec.max_params_per_subscribe), 1)
        ]

    def snapshot_url(self, venue_symbol: str) -> str | None:
        base = self.venue.base_url_http.rstrip("/")
        return f"{base}{self.spec.depth_path}?symbol={venue_symbol}&limit={self.venue.snapshot_limit}"
