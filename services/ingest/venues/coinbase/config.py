"""Coinbase Exchange's public websocket feed as data: channels and limits.

Hosts are settings (``ingest.venues.coinbase.base_url_ws`` = ``wss://ws-feed.exchange.coinbase.com``,
``base_url_http`` = ``https://api.exchange.coinbase.com``), never constants here.
"""

from __future__ import annotations

MARKETS_PATH = "/products"
MARKETS_FILE = "coinbase_products.json.gz"
# Unauthenticated L2 channel (``level2`` itself now needs an API key; same messages, batched 50 ms).
BOOK_CHANNEL = "level2_batch"
BOOK_CHANNELS = ("level2", "level2_batch")  # both carry snapshot + l2update
TRADE_CHANNEL = "matches"
# One heartbeat per product per second keeps a quiet product's feed from looking stale.
HEARTBEAT_CHANNEL = "heartbeat"
MAX_PRODUCTS_PER_SUBSCRIBE = 100
MAX_PRODUCTS_PER_CONNECTION = 500
