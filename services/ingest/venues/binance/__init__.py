"""Binance (spot), Binance.US and Binance USD-M futures: one wire format, three ``Venue`` objects."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from services.ingest.capture import Record, Session
from services.ingest.connector import Connector, chunked
from services.ingest.feed import Feed, FrameErrors, Sink, SymbolMap
from services.ingest.venues.base import Venue
from services.ingest.venues.binance.config import BINANCE, BINANCE_FUTURES, BINANCE_US, BinanceSpec
from services.ingest.venues.binance.connector import BinanceConnector, BinanceFeed
from services.ingest.venues.binance.symbols import guess_unified, parse_markets, shipped_markets
from shared.sections.ingest import IngestSettings, VenueSettings

STREAM = re.compile(r'^\{"stream":"([a-z0-9_]+)@([A-Za-z]+)(?:@(\d+)ms)?"')


class BinanceVenue(Venue):
    def __init__(self, spec: BinanceSpec) -> None:
        self.spec = spec
        self.exchange = spec.exchange
        self.markets_path = spec.markets_path

    def parse_markets(self, body: bytes | str) -> SymbolMap:
        return parse_markets(body)

    def shipped_markets(self) -> SymbolMap:
        return shipped_markets(self.spec)

    def feed(self, symbols: SymbolMap, sink: Sink, errors: FrameErrors | None = None, **kwargs: Any) -> BinanceFeed:
        return BinanceFeed(self.spec, symbols, sink, errors, **kwargs)

    def connectors(
        self, venue: VenueSettings, settings: IngestSettings, sink: Sink, symbols: SymbolMap, **kwargs: Any
    ) -> list[Connector]:
        errors = kwargs.pop("errors", None) or FrameErrors(self.exchange, kwargs.get("metrics"))
        per_symbol = max(1, int(venue.trades) + int(venue.book))
        limit = venue.max_streams_per_connection or self.spec.max_streams_per_connection
        out: list[Connector] = []
        groups = chunked(venue.symbols, max(1, limit // per_symbol))
        for i, group in enumerate(groups):
            feed = self.feed(symbols, sink, errors, max_buffered=settings.max_buffered_deltas)
            part = venue.model_copy(update={"symbols": group})
            name = self.exchange if len(groups) == 1 else f"{self.exchange}#{i + 1}"
            out.append(BinanceConnector(self.spec, feed, part, settings, name=name, **kwargs))
        return out

    def snapshot_symbol(self, record: Record) -> str | None:
        parts = urlsplit(record.url)
        if not parts.path.endswith("/depth"):
            return None
        symbols = parse_qs(parts.query).get("symbol")
        return symbols[0] if symbols else None

    def capture_settings(self, sessions: Sequence[Session], base: VenueSettings) -> VenueSettings:
        """Subscribe to the symbols and channels the capture has (trade or aggTrade, depth speed)."""
        symbols: dict[str, None] = {}
        channels: Counter[str] = Counter()
        speeds: Counter[int] = Counter()
        markets = None
        for session in sessions:
            markets = markets or self.session_markets(session)
            for record in session.frames():
                m = STREAM.match(record.data)
                if m:
                    symbol, channel, speed = m.groups()
                    if channel in ("trade", "aggTrade", "depth"):
                        symbols[symbol.upper()] = None
                        channels[channel] += 1
                        if channel == "depth":
                            speeds[int(speed) if speed is not None else 1000] += 1
        markets = markets or self.shipped_markets()
        unified = [markets.unified(s) or guess_unified(s) or s for s in symbols]
        trade_channel = "aggTrade" if channels["aggTrade"] > channels["trade"] else "trade"
        speed = speeds.most_common(1)[0][0] if speeds else base.depth_interval_ms
        return base.model_copy(
            update={
                "symbols": unified,
                "trade_channel": trade_channel,
                "depth_interval_ms": speed,
                "trades": bool(channels["trade"] or channels["aggTrade"]),
                "book": bool(channels["depth"]),
            }
        )

    def replay_rules(self, sessions: Sequence[Session]):  # type: ignore[no-untyped-def]
        from services.ingest.venues.binance.replay import BinanceReplay

        return BinanceReplay(self, sessions)


BINANCE_VENUE = BinanceVenue(BINANCE)
BINANCE_US_VENUE = BinanceVenue(BINANCE_US)
BINANCE_FUTURES_VENUE = BinanceVenue(BINANCE_FUTURES)

__all__ = ["BINANCE_FUTURES_VENUE", "BINANCE_US_VENUE", "BINANCE_VENUE", "BinanceFeed", "BinanceVenue", "Feed"]
