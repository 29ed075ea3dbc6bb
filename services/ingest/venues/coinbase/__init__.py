"""Coinbase Exchange (the public "Exchange" websocket feed): trades and L2 books."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from services.ingest.feed import SymbolMap
from services.ingest.venues.coinbase.config import MARKETS_FILE, MARKETS_PATH, MAX_PRODUCTS_PER_CONNECTION
from services.ingest.venues.coinbase.connector import CoinbaseConnector, CoinbaseFeed
from services.ingest.venues.coinbase.symbols import parse_markets
from services.ingest.venues.subscribed import SubscribeVenue


class _Keyed(msgspec.Struct):
    type: str = ""
    product_id: str = ""


_keyed = msgspec.json.Decoder(_Keyed)


class CoinbaseVenue(SubscribeVenue):
    exchange = "coinbase"
    markets_path = MARKETS_PATH
    package = __name__
    markets_file = MARKETS_FILE
    max_symbols_per_connection = MAX_PRODUCTS_PER_CONNECTION
    feed_class = CoinbaseFeed
    connector_class = CoinbaseConnector
    replay_class = "services.ingest.venues.coinbase.replay:CoinbaseReplay"

    def parse_markets(self, body: bytes | str) -> SymbolMap:
        return parse_markets(body)

    def frame_symbols(self, data: str) -> Iterable[tuple[str, str]]:
        try:
            msg = _keyed.decode(data)
        except msgspec.DecodeError:
            return ()
        if msg.type in ("snapshot", "l2update"):
            return [("book", msg.product_id)]
        if msg.type == "match":
            return [("trades", msg.product_id)]
        return ()


COINBASE_VENUE = CoinbaseVenue()
