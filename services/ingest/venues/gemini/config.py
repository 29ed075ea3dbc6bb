"""Gemini market data API v2 as data: the ``l2`` subscription (book and trades together).

Hosts are settings (``ingest.venues.gemini.base_url_ws`` = ``wss://api.gemini.com``,
``base_url_http`` = ``https://api.gemini.com``), never constants here.
"""

from __future__ import annotations

WS_PATH = "/v2/marketdata"
MARKETS_PATH = "/v1/symbols"
MARKETS_FILE = "gemini_symbols_details.json.gz"  # the /v1/symbols/details/<symbol> bodies, as one list
CHANNEL = "l2"  # l2_updates (the first one per symbol is the whole book) and trade messages
MAX_SYMBOLS_PER_SUBSCRIBE = 100
MAX_SYMBOLS_PER_CONNECTION = 100
# Quote currencies, longest first, to split a bare /v1/symbols name (``btcgusd`` -> BTC/GUSD).
QUOTES = ("GUSD", "USDT", "USDC", "DAI", "USD", "EUR", "GBP", "SGD", "BTC", "ETH", "LTC", "BCH", "FIL", "SOL")
