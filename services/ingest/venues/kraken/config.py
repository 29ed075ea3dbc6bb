"""Kraken spot websocket API v1 as data: channels, depths, limits.

Hosts are settings (``ingest.venues.kraken.base_url_ws`` = ``wss://ws.kraken.com``,
``base_url_http`` = ``https://api.kraken.com``), never constants here.
"""

from __future__ import annotations

MARKETS_PATH = "/0/public/AssetPairs"
MARKETS_FILE = "kraken_AssetPairs.json.gz"
BOOK_DEPTHS = (10, 25, 100, 500, 1000)  # the depths Kraken accepts
CHECKSUM_LEVELS = 10  # the book checksum covers the best 10 levels per side
MAX_PAIRS_PER_SUBSCRIBE = 100
MAX_PAIRS_PER_CONNECTION = 200
# Kraken's own asset codes that differ from the common ones.
ASSET_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}


def book_depth(levels: int) -> int:
    """The smallest depth Kraken accepts that holds ``levels`` levels (at most 1000)."""
    return next((d for d in BOOK_DEPTHS if d >= levels), BOOK_DEPTHS[-1])
