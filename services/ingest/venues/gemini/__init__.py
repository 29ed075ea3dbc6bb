"""Gemini (market data API v2): trades and L2 books from the ``l2`` subscription."""

from __future__ import annotations

import re
from collections.abc import Iterable

from services.ingest.capture import Session
from services.ingest.feed import SymbolMap
from services.ingest.venues.gemini.config import MARKETS_FILE, MARKETS_PATH, MAX_SYMBOLS_PER_CONNECTION
from services.ingest.venues.gemini.connector import GeminiConnector, GeminiFeed
from services.ingest.venues.gemini.symbols import parse_markets, split
from services.ingest.venues.subscribed import SubscribeVenue

_DATA = re.compile(r'^\{"type":"(l2_updates|trade)","symbol":"([A-Z0-9]+)"')


def kind_and_symbol(data: str) -> tuple[str, str] | None:
    m = _DATA.match(data)
    if m is None:
        return None
    return ("book" if m.group(1) == "l2_updates" else "trades"), m.group(2)


class GeminiVenue(SubscribeVenue):
    exchange = "gemini"
    markets_path = MARKETS_PATH
    package = __name__
    markets_file = MARKETS_FILE
    max_symbols_per_connection = MAX_SYMBOLS_PER_CONNECTION
    feed_class = GeminiFeed
    connector_class = GeminiConnector
    replay_class = "services.ingest.venues.gemini.replay:GeminiReplay"

    def parse_markets(self, body: bytes | str) -> SymbolMap:
        return parse_markets(body)

    def session_markets(self, session: Session) -> SymbolMap | None:
        """The capture's symbol-details bodies (exact), else its /v1/symbols list (split by name)."""
        merged: dict[str, str] = {}
        for record in session.rest("/v1/symbols"):
            try:
                found = parse_markets(record.data).to_unified
            except ValueError:
                continue
            for symbol, unified in found.items():
                if "/symbols/details/" in record.url or symbol not in merged:
                    merged[symbol] = unified
        return SymbolMap(merged) if merged else None

    def guess_unified(self, venue_symbol: str) -> str | None:
        return split(venue_symbol)

    def frame_symbols(self, data: str) -> Iterable[tuple[str, str]]:
        found = kind_and_symbol(data)
        if found is None:
            return ()
        return [found, ("trades", found[1])] if found[0] == "book" else [found]


GEMINI_VENUE = GeminiVenue()
