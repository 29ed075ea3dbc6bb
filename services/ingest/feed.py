"""The venue-independent half of a feed: frames in, normalized messages out, no I/O.

A venue's ``Feed`` subclass turns raw frames (and REST snapshot bodies) into ``Trade`` /
``BookUpdate`` / ``Status`` messages and hands them to a ``Sink``; it keeps one ``OrderBook``
per symbol and applies the venue's sequence rules. It does no I/O, so the same object runs
inside a live ``Connector``, inside ``tradewind normalize`` over a file, and in benchmarks.
When it needs a REST snapshot it calls ``request_snapshot`` (the connector fetches it; offline,
the recorded snapshots simply arrive in time order).

``on_frame`` never raises: a frame that cannot be understood is counted and logged once per
kind by ``FrameErrors``, and the feed carries on.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from services.ingest.book import OrderBook
from shared.metrics import ServiceMetrics
from shared.schemas import BookUpdate, Status, Trade, streams
from shared.schemas.messages import FeedState

log = logging.getLogger(__name__)

SAMPLE_CHARS = 160


class Sink(Protocol):
    """Where a feed's normalized messages go (Redis in production, a list or stdout offline)."""

    def trade(self, msg: Trade) -> None: ...

    def book(self, msg: BookUpdate) -> None: ...

    def status(self, msg: Status) -> None: ...


class CollectSink:
    """Keep every message in memory (tests, `normalize`)."""

    def __init__(self) -> None:
        self.messages: list[Trade | BookUpdate | Status] = []

    def trade(self, msg: Trade) -> None:
        self.messages.append(msg)

    def book(self, msg: BookUpdate) -> None:
        self.messages.append(msg)

    def status(self, msg: Status) -> None:
        self.messages.append(msg)

    def of(self, kind: type) -> list:
        return [m for m in self.messages if isinstance(m, kind)]


class NullSink:
    """Drop every message (a capture only needs the feed for its snapshot requests)."""

    def trade(self, msg: Trade) -> None:
        pass

    def book(self, msg: BookUpdate) -> None:
        pass

    def status(self, msg: Status) -> None:
        pass


class BusSink:
    """Publish through ``shared.bus.Publisher`` to ``md:trades:{ex}``, ``md:book:{ex}``, ``md:status``."""

    def __init__(self, publisher: object, exchange: str, high_water: int | None = None) -> None:
        from shared.publisher import Publisher

        assert isinstance(publisher, Publisher)
        self.publisher = publisher
        self._put = publisher.put_nowait
        self._trades = streams.md_trades(exchange)
        self._books = streams.md_book(exchange)
        self.high_water = high_water or publisher.max_buffered

    def trade(self, msg: Trade) -> None:
        self._put(self._trades, msg)

    def book(self, msg: BookUpdate) -> None:
        self._put(self._books, msg)

    def status(self, msg: Status) -> None:
        self._put(streams.MD_STATUS, msg)

    @property
    def backlogged(self) -> bool:
        """True when Redis is not keeping up; the connector then waits before reading more."""
        return self.publisher.buffered >= self.high_water

    async def drain(self) -> None:
        await self.publisher.flush()


def truncate(frame: str | bytes, limit: int = SAMPLE_CHARS) -> str:
    text = frame if isinstance(frame, str) else repr(frame[: limit * 2])
    return text if len(text) <= limit else f"{text[:limit]}... ({len(frame)} chars)"


class FrameErrors:
    """Count frames that could not be used, by kind; log each kind once with a truncated sample.

    ``report`` (e.g. `normalize`, which names the line) replaces the log-once behaviour.
    """

    def __init__(
        self,
        exchange: str,
        metrics: ServiceMetrics | None = None,
        report: Callable[[str, str], None] | None = None,
    ) -> None:
        self.exchange = exchange
        self.metrics = metrics
        self.report = report
        self.counts: Counter[str] = Counter()
        self.silent = 0  # frames that gave no message and no error (acks, heartbeats; counted by normalize)

    def __call__(self, kind: str, frame: str | bytes, detail: str = "") -> None:
        self.counts[kind] += 1
        if self.metrics:
            self.metrics.error(f"frame_{kind.split(' ', 1)[0]}")
        message = f"{kind}{': ' + detail if detail else ''}; frame: {truncate(frame)}"
        if self.report is not None:
            self.report(kind, message)
        elif self.counts[kind] == 1:
            log.warning("%s: %s (logged once; further ones are counted)", self.exchange, message)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class SymbolMap:
    """Venue symbols (``BTCUSDT``) <-> unified ``BASE/QUOTE`` (``BTC/USDT``), from a market list."""

    def __init__(self, to_unified: dict[str, str]) -> None:
        self.to_unified = dict(to_unified)
        self.to_venue = {u: v for v, u in self.to_unified.items()}

    def __len__(self) -> int:
        return len(self.to_unified)

    def unified(self, venue_symbol: str) -> str | None:
        return self.to_unified.get(venue_symbol)

    def venue(self, unified: str, exchange: str = "") -> str:
        try:
            return self.to_venue[unified]
        except KeyError:
            raise KeyError(
                f"{exchange or 'venue'}: symbol {unified!r} is not in the venue's market list "
                f"({len(self.to_venue)} markets)"
            ) from None


SnapshotRequest = Callable[[str, float], None]  # (venue symbol, delay in seconds)


class Feed:
    """Base of every venue's parser/book keeper. Subclasses implement ``handle`` (and snapshots)."""

    keep_text = False  # venues whose checksums need the level strings set this

    def __init__(
        self,
        exchange: str,
        symbols: SymbolMap,
        sink: Sink,
        errors: FrameErrors | None = None,
        *,
        request_snapshot: SnapshotRequest | None = None,
        max_buffered: int = 20_000,
    ) -> None:
        self.exchange = exchange
        self.symbols = symbols
        self.sink = sink
        self.errors = errors or FrameErrors(exchange)
        self.request_snapshot = request_snapshot
        self.max_buffered = max_buffered
        self.books: dict[str, OrderBook] = {}
        self.ignored: Counter[str] = Counter()  # valid frames of channels this feed does not normalize
        self.frames = 0

    # -- entry points: never raise -------------------------------------------------------------

    def on_frame(self, frame: str | bytes, recv_ts: int) -> None:
        """Handle one received frame; anything wrong with it is counted, never raised."""
        self.frames += 1
        try:
            self.handle(frame, recv_ts)
        except RecursionError:  # JSON nested deeper than the decoder goes (msgspec's limit is ~1000)
            self.errors("not JSON", frame, "nested too deeply")
        except Exception as exc:  # the guarantee: a bad frame never takes the connector down
            self.errors(f"unexpected {type(exc).__name__}", frame, str(exc)[:200])

    def on_snapshot(self, venue_symbol: str, body: str | bytes, recv_ts: int) -> None:
        """Handle a REST order-book snapshot body for ``venue_symbol``; never raises."""
        try:
            self.handle_snapshot(venue_symbol, body, recv_ts)
        except Exception as exc:
            self.errors(f"unexpected {type(exc).__name__} in snapshot", body, str(exc)[:200])

    def reset(self) -> None:
        """The connection is gone: every book must be rebuilt from a new snapshot."""
        for book in self.books.values():
            book.clear()

    # -- subclass hooks ----------------------------------------------------------------------

    def handle(self, frame: str | bytes, recv_ts: int) -> None:
        raise NotImplementedError

    def handle_snapshot(self, venue_symbol: str, body: str | bytes, recv_ts: int) -> None:
        raise NotImplementedError(f"{self.exchange} books need no REST snapshot")

    # -- helpers for subclasses --------------------------------------------------------------

    def book_of(self, symbol: str) -> OrderBook:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = OrderBook(symbol, keep_text=self.keep_text)
        return book

    def status(self, state: FeedState, symbol: str | None = None, detail: str = "", ts: int | None = None) -> None:
        self.sink.status(Status(self.exchange, state, ts or time.time_ns(), symbol, detail))

    def gap(self, symbol: str, detail: str, ts: int | None = None) -> None:
        """Report a gap and drop the book; publish nothing for it until it is resynced."""
        self.book_of(symbol).clear()
        self.status("gap", symbol, detail, ts)

    def ask_snapshot(self, venue_symbol: str, delay: float = 0.0) -> None:
        if self.request_snapshot is not None:
            self.request_snapshot(venue_symbol, delay)
