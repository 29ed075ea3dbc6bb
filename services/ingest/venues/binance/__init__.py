"""Binance (spot), Binance.US and Binance USD-M futures: one wire format, three ``Venue`` objects."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from services.ingest.capture import Record, Session
from services.ingest.connector import Connector
from services.ingest.feed import Feed, FrameErrors, Sink, SymbolMap
from services.ingest.venues.binance.config import BINANCE, BINANCE_FUTURES, BINANCE_US, SYNTH, BinanceSpec
from services.ingest.venues.binance.connector import BinanceConnector, BinanceFeed
from services.ingest.venues.binance.symbols import guess_unified, parse_markets
from services.ingest.venues.subscribed import SubscribeVenue
from shared.sections.ingest import IngestSettings, VenueSettings

STREAM = re.compile(r'^\{"stream":"([a-z0-9_]+)@([A-Za-z]+)(?:@(\d+)ms)?"')


class BinanceVenue(SubscribeVenue):
    """A ``SubscribeVenue`` made from a ``BinanceSpec``: its limit counts streams (trades and depth
    are one each per symbol), and a capture also tells the trade channel and the depth speed."""

    package = __name__
    replay_class = "services.ingest.venues.binance.replay:BinanceReplay"

    def __init__(self, spec: BinanceSpec) -> None:
        self.spec = spec
        self.exchange = spec.exchange
        self.markets_path = spec.markets_path
        self.markets_file = spec.markets_file

    def parse_markets(self, body: bytes | str) -> SymbolMap:
        return parse_markets(body)

    def feed(self, symbols: SymbolMap, sink: Sink, errors: FrameErrors | None = None, **kwargs: Any) -> BinanceFeed:
        return BinanceFeed(self.spec, symbols, sink, errors, **kwargs)

    def symbols_per_connection(self, venue: VenueSettings) -> int:
        per_symbol = max(1, int(venue.trades) + int(venue.book))
        return max(1, (venue.max_streams_per_connection or self.spec.max_streams_per_connection) // per_symbol)

    def connector(
        self, feed: Feed, venue: VenueSettings, settings: IngestSettings, name: str, **kwargs: Any
    ) -> Connector:
        assert isinstance(feed, BinanceFeed)
        return BinanceConnector(self.spec, feed, venue, settings, name=name, **kwargs)

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


BINANCE_VENUE = BinanceVenue(BINANCE)
BINANCE_US_VENUE = BinanceVenue(BINANCE_US)
BINANCE_FUTURES_VENUE = BinanceVenue(BINANCE_FUTURES)
SYNTH_VENUE = BinanceVenue(SYNTH)  # the generated market of `tradewind up --mode synth`

__all__ = [
    "BINANCE_FUTURES_VENUE",
    "BINANCE_US_VENUE",
    "BINANCE_VENUE",
    "SYNTH_VENUE",
    "BinanceFeed",
    "BinanceVenue",
    "Feed",
]
