"""OKX (public websocket API v5): trades and checksum/seqId-verified L2 books."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from services.ingest.capture import Session
from services.ingest.feed import SymbolMap
from services.ingest.venues.okx.config import (
    BOOK_CHANNELS,
    MARKETS_FILE,
    MARKETS_PATH,
    MARKETS_PATHS,
    MAX_INSTRUMENTS_PER_CONNECTION,
    TRADE_CHANNEL,
)
from services.ingest.venues.okx.connector import OkxConnector, OkxFeed
from services.ingest.venues.okx.schemas import push_decoder
from services.ingest.venues.okx.symbols import instruments, parse_markets
from services.ingest.venues.subscribed import SubscribeVenue


def channel_and_inst(data: str) -> tuple[str, str] | None:
    if not data.startswith('{"arg"'):
        return None
    try:
        arg = push_decoder.decode(data).arg
    except msgspec.DecodeError:
        return None
    return arg.channel, arg.instId


class OkxVenue(SubscribeVenue):
    exchange = "okx"
    markets_path = MARKETS_PATH
    package = __name__
    markets_file = MARKETS_FILE
    max_symbols_per_connection = MAX_INSTRUMENTS_PER_CONNECTION
    feed_class = OkxFeed
    connector_class = OkxConnector
    replay_class = "services.ingest.venues.okx.replay:OkxReplay"

    def parse_markets(self, body: bytes | str) -> SymbolMap:
        return parse_markets(body)

    def session_markets(self, session: Session) -> SymbolMap | None:
        """Every instruments body the capture recorded, merged (one per instrument type)."""
        merged: dict[str, str] = {}
        for record in session.rest("/public/instruments"):
            try:
                merged.update(instruments(record.data))
            except ValueError:
                continue
        return SymbolMap(merged) if merged else None

    async def fetch_markets(self, http: Any, base_url_http: str) -> tuple[SymbolMap, bytes]:
        bodies = []
        for path in MARKETS_PATHS:
            url = base_url_http.rstrip("/") + path
            async with http.get(url) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise ValueError(f"okx: GET {url} answered HTTP {resp.status}: {body[:200]!r}")
            bodies.append(body.strip())
        raw = b"\n".join(bodies)
        return parse_markets(raw), raw

    def frame_symbols(self, data: str) -> Iterable[tuple[str, str]]:
        found = channel_and_inst(data)
        if found is None or '"data"' not in data:
            return ()
        channel, inst = found
        if channel in BOOK_CHANNELS:
            return [("book", inst)]
        return [("trades", inst)] if channel == TRADE_CHANNEL else ()


OKX_VENUE = OkxVenue()
