"""Bitstamp (websocket API v2): trades and full L2 books from diffs over a REST snapshot."""

from __future__ import annotations

import re
from collections.abc import Iterable

from services.ingest.capture import Record, Session
from services.ingest.feed import SymbolMap
from services.ingest.venues.bitstamp.config import (
    BOOK_CHANNEL,
    MARKETS_FILE,
    MARKETS_PATH,
    MAX_PAIRS_PER_CONNECTION,
    TRADE_CHANNEL,
)
from services.ingest.venues.bitstamp.connector import BitstampConnector, BitstampFeed
from services.ingest.venues.bitstamp.symbols import parse_markets
from services.ingest.venues.subscribed import SubscribeVenue

_CHANNEL = re.compile(r'"channel":"([a-z_]+?)_?([a-z0-9]+)","event":"(data|trade)"')
_SNAPSHOT_URL = re.compile(r"/api/v2/order_book/([a-z0-9]+)/?(?:\?|$)")


def channel_of(data: str) -> tuple[str, str] | None:
    """("book" | "trades", pair) of a diff or trade frame."""
    m = _CHANNEL.search(data)
    if m is None:
        return None
    prefix = m.group(1) + "_"
    if prefix == BOOK_CHANNEL:
        return "book", m.group(2)
    return ("trades", m.group(2)) if prefix == TRADE_CHANNEL else None


class BitstampVenue(SubscribeVenue):
    exchange = "bitstamp"
    markets_path = MARKETS_PATH
    package = __name__
    markets_file = MARKETS_FILE
    max_symbols_per_connection = MAX_PAIRS_PER_CONNECTION
    feed_class = BitstampFeed
    connector_class = BitstampConnector
    replay_class = "services.ingest.venues.bitstamp.replay:BitstampReplay"

    def parse_markets(self, body: bytes | str) -> SymbolMap:
        return parse_markets(body)

    def session_markets(self, session: Session) -> SymbolMap | None:
        for record in session.rest("trading-pairs-info"):
            try:
                return self.parse_markets(record.data)
            except ValueError:
                continue
        return None

    def snapshot_symbol(self, record: Record) -> str | None:
        m = _SNAPSHOT_URL.search(record.url)
        return m.group(1) if m else None

    def frame_symbols(self, data: str) -> Iterable[tuple[str, str]]:
        found = channel_of(data)
        return [found] if found else ()


BITSTAMP_VENUE = BitstampVenue()
