"""Bybit (public websocket API v5, linear contracts): trades and L2 books checked by update id."""

from __future__ import annotations

import re
from collections.abc import Iterable

from services.ingest.feed import SymbolMap
from services.ingest.venues.bybit.config import MARKETS_PATH, MAX_SYMBOLS_PER_CONNECTION
from services.ingest.venues.bybit.connector import BybitConnector, BybitFeed
from services.ingest.venues.bybit.symbols import guess_unified, parse_markets
from services.ingest.venues.subscribed import SubscribeVenue

_TOPIC = re.compile(r'^\{"topic":"(orderbook\.\d+|publicTrade)\.([A-Z0-9]+)"')


def topic_of(data: str) -> tuple[str, str] | None:
    """("book" | "trades", symbol) of a data frame."""
    m = _TOPIC.match(data)
    if m is None:
        return None
    return ("trades" if m.group(1) == "publicTrade" else "book"), m.group(2)


class BybitVenue(SubscribeVenue):
    exchange = "bybit"
    markets_path = MARKETS_PATH
    max_symbols_per_connection = MAX_SYMBOLS_PER_CONNECTION
    feed_class = BybitFeed
    connector_class = BybitConnector
    replay_class = "services.ingest.venues.bybit.replay:BybitReplay"

    def parse_markets(self, body: bytes | str) -> SymbolMap:
        return parse_markets(body)

    def shipped_markets(self) -> SymbolMap:
        """None is shipped (the recorded data has no v5 list): symbols are split on their quote coin."""
        return SymbolMap({})

    def guess_unified(self, venue_symbol: str) -> str | None:
        return guess_unified(venue_symbol)

    def frame_symbols(self, data: str) -> Iterable[tuple[str, str]]:
        found = topic_of(data)
        return [found] if found else ()


BYBIT_VENUE = BybitVenue()
