"""The shape shared by venues that stream a book as snapshot + deltas after a subscribe frame.

Coinbase, Kraken, OKX, Bybit, Bitfinex and Gemini all send a full book when a client subscribes
and deltas after it; when a delta is lost (sequence gap, checksum mismatch, unreadable book
frame) the only way back is to subscribe again, which makes the venue send a fresh snapshot.
Bitstamp streams deltas only and resyncs from a REST snapshot; it shares the rest.

- ``SubscribeVenue``: a venue as data (markets file, connection limits, its Feed / Connector /
  replay classes); subclasses parse the market list and name a frame's symbol.
- ``ResyncFeed``: publishes snapshots and deltas and owns the gap rule: ``lost`` reports the gap,
  drops the book and asks the connector to resync; nothing is published for that book until
  the next snapshot, which publishes ``resynced``.
- ``SubscribeReplay``: the replay exchange for these venues: frames of the (channel, symbol)
  pairs a client subscribed to, and on a re-subscription the book as it stands at the client's
  replay position, in the venue's own snapshot format.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

from services.ingest.book import OrderBook, TextLevel
from services.ingest.capture import Record, Session
from services.ingest.connector import Connector, chunked
from services.ingest.feed import Feed, FrameErrors, Sink, SymbolMap
from services.ingest.replay_rules import Client, ReplayRules
from services.ingest.venues.base import Venue
from shared.schemas import BookUpdate
from shared.sections.ingest import IngestSettings, VenueSettings

Levels = Sequence[tuple[float, float]]


class SubscribeVenue(Venue):
    """A venue whose connectors subscribe to trades and books of up to N symbols per connection."""

    package = ""  # e.g. "services.ingest.venues.coinbase": its markets/ folder holds the shipped list
    markets_file = ""
    max_symbols_per_connection = 100
    feed_class: type[Feed] = Feed
    connector_class: type[Connector] = Connector
    replay_class = ""  # "module:Class" of its ReplayRules, imported only by the replay exchange

    def shipped_markets(self) -> SymbolMap:
        data = resources.files(self.package).joinpath("markets", self.markets_file).read_bytes()
        return self.parse_markets(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)

    def feed(self, symbols: SymbolMap, sink: Sink, errors: FrameErrors | None = None, **kwargs: Any) -> Feed:
        return self.feed_class(self.exchange, symbols, sink, errors, **kwargs)

    def connectors(
        self, venue: VenueSettings, settings: IngestSettings, sink: Sink, symbols: SymbolMap, **kwargs: Any
    ) -> list[Connector]:
        errors = kwargs.pop("errors", None) or FrameErrors(self.exchange, kwargs.get("metrics"))
        groups = chunked(venue.symbols, self.symbols_per_connection(venue))
        out: list[Connector] = []
        for i, group in enumerate(groups):
            feed = self.feed(symbols, sink, errors, max_buffered=settings.max_buffered_deltas)
            part = venue.model_copy(update={"symbols": group})
            name = self.exchange if len(groups) == 1 else f"{self.exchange}#{i + 1}"
            out.append(self.connector(feed, part, settings, name, **kwargs))
        return out

    def symbols_per_connection(self, venue: VenueSettings) -> int:
        """How many symbols one connection subscribes to (the setting, else the venue's limit)."""
        return venue.max_streams_per_connection or self.max_symbols_per_connection

    def connector(
        self, feed: Feed, venue: VenueSettings, settings: IngestSettings, name: str, **kwargs: Any
    ) -> Connector:
        return self.connector_class(feed, venue, settings, name=name, **kwargs)

    def guess_unified(self, venue_symbol: str) -> str | None:
        """The unified symbol of one missing from the market list, where the venue's names allow."""
        return None

    def frame_symbols(self, data: str) -> Iterable[tuple[str, str]]:
        """(channel, venue symbol) pairs a recorded frame carries data of; channel is "trades" or "book"."""
        return ()

    def capture_settings(self, sessions: Sequence[Session], base: VenueSettings) -> VenueSettings:
        """Subscribe to every symbol the capture has trades or book data of."""
        found: dict[str, None] = {}
        channels: set[str] = set()
        markets = None
        for session in sessions:
            markets = markets or self.session_markets(session)
            for record in session.frames():
                for channel, symbol in self.frame_symbols(record.data):
                    found[symbol] = None
                    channels.add(channel)
        markets = markets or self.shipped_markets()
        unified = [markets.unified(s) or self.guess_unified(s) or s for s in found]
        return base.model_copy(
            update={
                "symbols": [u for u in unified if "/" in u],
                "trades": "trades" in channels,
                "book": "book" in channels,
            }
        )

    def replay_rules(self, sessions: Sequence[Session]) -> ReplayRules:
        module, attr = self.replay_class.split(":")
        rules = getattr(importlib.import_module(module), attr)(self, sessions)
        assert isinstance(rules, ReplayRules)
        return rules


class ResyncFeed(Feed):
    """Snapshot/delta bookkeeping and the gap rule, for venues whose subclasses parse the frames."""

    def __init__(self, exchange: str, symbols: SymbolMap, sink: Sink, errors: FrameErrors | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(exchange, symbols, sink, errors, **kwargs)
        self.resyncing: set[str] = set()  # venue symbols whose book was dropped, waiting for a snapshot
        self._unified: dict[str, str] = dict(symbols.to_unified)

    def unified(self, venue_symbol: str, frame: str | bytes) -> str:
        """The unified symbol; one missing from the market list is published as the venue spells it."""
        symbol = self._unified.get(venue_symbol)
        if symbol is None:
            symbol = self._unified[venue_symbol] = venue_symbol
            self.errors("symbol not in market list", frame, f"{venue_symbol!r} published as is")
        return symbol

    def live(self, symbol: str) -> OrderBook | None:
        """The book if it is in sync (a snapshot applied since the last gap), else None."""
        book = self.books.get(symbol)
        return book if book is not None and book.seq >= 0 else None

    def publish_snapshot(
        self,
        venue_symbol: str,
        symbol: str,
        bids: Levels,
        asks: Levels,
        seq: int,
        ts: int,
        recv_ts: int,
        text: tuple[Sequence[TextLevel], Sequence[TextLevel]] | None = None,
    ) -> OrderBook:
        """Replace the book and publish it (a snapshot after a gap also publishes ``resynced``)."""
        book = self.book_of(symbol)
        if text is not None:
            book.clear()
            book.apply_text(text[0], text[1], seq, ts)
        else:
            book.load(bids, asks, seq, ts)
        self.sink.book(BookUpdate(self.exchange, symbol, seq, ts or recv_ts, recv_ts, list(bids), list(asks), True))
        if venue_symbol in self.resyncing:
            self.resyncing.discard(venue_symbol)
            self.status("resynced", symbol, f"{venue_symbol}: book rebuilt from a fresh snapshot", recv_ts)
        return book

    def publish_delta(self, book: OrderBook, bids: Levels, asks: Levels, seq: int, ts: int, recv_ts: int) -> None:
        self.sink.book(BookUpdate(self.exchange, book.symbol, seq, ts or recv_ts, recv_ts, list(bids), list(asks)))

    def lost(self, venue_symbol: str, detail: str, ts: int) -> None:
        """A delta of ``venue_symbol`` is missing or wrong: gap, drop the book, resync (once)."""
        symbol = self._unified.get(venue_symbol, venue_symbol)
        if venue_symbol in self.resyncing:
            return
        self.resyncing.add(venue_symbol)
        self.gap(symbol, f"{venue_symbol}: {detail}", ts)
        self.ask_snapshot(venue_symbol)

    def reset(self) -> None:
        super().reset()
        self.resyncing.clear()


def text_levels(levels: Iterable[Sequence[Any]]) -> tuple[list[tuple[float, float]], list[TextLevel]]:
    """Venue levels ``[price, amount, ...]`` as strings -> (float levels, text levels)."""
    floats: list[tuple[float, float]] = []
    texts: list[TextLevel] = []
    for level in levels:
        p, a = str(level[0]), str(level[1])
        floats.append((float(p), float(a)))
        texts.append((p, a))
    return floats, texts


class SubscribeReplay(ReplayRules):
    """Replay for subscribe-per-channel venues. Subclasses parse their frames (the hooks below)."""

    settle_s = 0.1  # quiet time after the last subscribe frame before the replay starts

    def __init__(self, venue: Venue, sessions: Sequence[Session]) -> None:
        super().__init__(venue, sessions)
        self.clients_sent_first = True  # nothing is sent before the client subscribes

    # -- venue hooks ---------------------------------------------------------------------------

    def subscription(self, text: str) -> tuple[list[str], list[str], list[str]] | None:
        """A client frame -> (keys subscribed, keys unsubscribed, reply frames); None if not one."""
        raise NotImplementedError

    def key(self, record: Record) -> str | None:
        """``"trades:SYM"`` / ``"book:SYM"`` of a recorded frame, None for a frame every client gets
        (heartbeats, venue info), or "" for one no client gets (acks of the recording's own requests)."""
        raise NotImplementedError

    def book_event(self, record: Record) -> tuple[str, bool, list[TextLevel], list[TextLevel]] | None:
        """(venue symbol, is snapshot, bids, asks) of a recorded book frame, amounts as text."""
        return None

    def snapshot_frames(self, client: Client, venue_symbol: str, book: OrderBook) -> list[str]:
        """The venue's snapshot frame(s) of ``book`` (sent on a re-subscription)."""
        raise NotImplementedError

    # -- engine --------------------------------------------------------------------------------

    def new_client(self, client: Client) -> None:
        client.state["books"] = {}

    def on_client_frame(self, client: Client, text: str) -> list[str]:
        parsed = self.subscription(text)
        if parsed is None:
            return []
        added, removed, replies = parsed
        client.subscriptions.difference_update(removed)
        books: dict[str, OrderBook] = client.state["books"]
        out = list(replies)
        for key in added:
            channel, _, symbol = key.partition(":")
            if channel == "book" and key not in client.subscriptions and symbol in books:
                out.extend(self.snapshot_frames(client, symbol, books[symbol]))  # a re-subscription
            client.subscriptions.add(key)
        if added and not client.ready.is_set():
            # The replay starts once the client's subscribe frames stop coming (venues that take
            # one frame per channel get many), so a fast replay does not run past the later ones.
            timer = client.state.get("settle")
            if timer is not None:
                timer.cancel()
            client.state["settle"] = asyncio.get_running_loop().call_later(self.settle_s, client.ready.set)
        return out

    def wants(self, client: Client, record: Record) -> bool:
        key = self.key(record)
        return key is None or key in client.subscriptions

    def observe(self, client: Client, record: Record) -> None:
        if record.kind != "frame":
            return
        try:
            event = self.book_event(record)
        except (ValueError, KeyError, TypeError, IndexError):
            return
        if event is None:
            return
        symbol, snapshot, bids, asks = event
        books: dict[str, OrderBook] = client.state["books"]
        book = books.get(symbol)
        if snapshot:
            book = books[symbol] = OrderBook(symbol, keep_text=True)
        if book is not None:
            try:
                book.apply_text(bids, asks, book.seq + 1)
            except ValueError:
                return


def iso_ns(text: str) -> int:
    """``2021-04-17T16:43:37.075687Z`` (any number of fraction digits) -> ns since the epoch, UTC."""
    from datetime import datetime

    head, _, frac = text.rstrip("Z").partition(".")
    digits = "".join(c for c in frac if c.isdigit())[:9]
    seconds = int(datetime.fromisoformat(head + "+00:00").timestamp())
    return seconds * 1_000_000_000 + int((digits + "000000000")[:9])
