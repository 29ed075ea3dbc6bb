"""Bybit public websocket API v5 (linear contracts: USDT/USDC perpetuals) as data.

Hosts are settings (``ingest.venues.bybit.base_url_ws`` = ``wss://stream.bybit.com``,
``base_url_http`` = ``https://api.bybit.com``), never constants here.
"""

from __future__ import annotations

CATEGORY = "linear"
WS_PATH = f"/v5/public/{CATEGORY}"
MARKETS_PATH = f"/v5/market/instruments-info?category={CATEGORY}&limit=1000"
BOOK_DEPTHS = (1, 50, 200, 1000)  # orderbook.{depth}.{symbol} depths of linear contracts
MAX_ARGS_PER_SUBSCRIBE = 10
MAX_SYMBOLS_PER_CONNECTION = 100
PING_INTERVAL_S = 20.0  # Bybit's advice: {"op":"ping"} every 20 s
# Offline, a symbol splits on the quote coin it ends with (longest first).
QUOTES = ("USDT", "USDC", "USD")


def book_depth(levels: int) -> int:
    return next((d for d in BOOK_DEPTHS if d >= levels), BOOK_DEPTHS[-1])
