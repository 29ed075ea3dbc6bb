"""Bitfinex (public websocket API v2): trades and L2 books, checked by the SEQ_ALL sequence."""

from __future__ import annotations

from collections.abc import Iterable

from services.ingest.feed import SymbolMap
from services.ingest.venues.bitfinex.config import MARKETS_FILE, MARKETS_PATH, MAX_CHANNELS_PER_CONNECTION
from services.ingest.venues.bitfinex.connector import BitfinexConnector, BitfinexFeed
from services.ingest.venues.bitfinex.schemas import event_decoder
from services.ingest.venues.bitfinex.symbols import parse_markets
from services.ingest.venues.subscribed import SubscribeVenue


class BitfinexVenue(SubscribeVenue):
    exchange = "bitfinex"
    markets_path = MARKETS_PATH
    package = __name__
    markets_file = MARKETS_FILE
    max_symbols_per_connection = MAX_CHANNELS_PER_CONNECTION // 2  # a trades and a book channel each
    feed_class = BitfinexFeed
    connector_class = BitfinexConnector
    replay_class = "services.ingest.venues.bitfinex.replay:BitfinexReplay"

    def parse_markets(self, body: bytes | str) -> SymbolMap:
        return parse_markets(body)

    def frame_symbols(self, data: str) -> Iterable[tuple[str, str]]:
        if not data.startswith('{"event":"subscribed"'):
            return ()
        event = event_decoder.decode(data)
        if event.channel == "book":
            return [("book", event.symbol)]
        return [("trades", event.symbol)] if event.channel == "trades" else ()


BITFINEX_VENUE = BitfinexVenue()
