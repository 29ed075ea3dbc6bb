"""Kraken spot (websocket API v1): trades and checksum-verified L2 books."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from services.ingest.feed import SymbolMap
from services.ingest.venues.kraken.config import MARKETS_FILE, MARKETS_PATH, MAX_PAIRS_PER_CONNECTION
from services.ingest.venues.kraken.connector import KrakenConnector, KrakenFeed
from services.ingest.venues.kraken.symbols import parse_markets
from services.ingest.venues.subscribed import SubscribeVenue


def channel_and_pair(data: str) -> tuple[str, str] | None:
    """(channel name, pair) of a data frame ``[id, ..., "book-1000", "XMR/USD"]``, else None."""
    if not data.startswith("["):
        return None
    try:
        msg = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    if isinstance(msg, list) and len(msg) >= 4 and isinstance(msg[-2], str) and isinstance(msg[-1], str):
        return msg[-2], msg[-1]
    return None


class KrakenVenue(SubscribeVenue):
    exchange = "kraken"
    markets_path = MARKETS_PATH
    package = __name__
    markets_file = MARKETS_FILE
    max_symbols_per_connection = MAX_PAIRS_PER_CONNECTION
    feed_class = KrakenFeed
    connector_class = KrakenConnector
    replay_class = "services.ingest.venues.kraken.replay:KrakenReplay"

    def parse_markets(self, body: bytes | str) -> SymbolMap:
        return parse_markets(body)

    def frame_symbols(self, data: str) -> Iterable[tuple[str, str]]:
        found = channel_and_pair(data)
        if found is None:
            return ()
        channel, pair = found
        if channel.startswith("book-"):
            return [("book", pair)]
        return [("trades", pair)] if channel == "trade" else ()


KRAKEN_VENUE = KrakenVenue()
