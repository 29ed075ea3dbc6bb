"""Bitfinex public websocket API v2 as data: channels, flags, limits.

Hosts are settings (``ingest.venues.bitfinex.base_url_ws`` = ``wss://api-pub.bitfinex.com``,
``base_url_http`` = ``https://api-pub.bitfinex.com``), never constants here.
"""

from __future__ import annotations

WS_PATH = "/ws/2"
MARKETS_PATH = "/v2/conf/pub:list:pair:exchange"
MARKETS_FILE = "bitfinex_pair_exchange.json.gz"
SEQ_ALL = 65536  # conf flag: every frame ends with the connection's sequence number
OB_CHECKSUM = 131072  # conf flag: every book channel gets ``[chanId, "cs", checksum]`` frames
CONF_FLAGS = SEQ_ALL | OB_CHECKSUM  # what the connector asks for
CHECKSUM_LEVELS = 25  # the checksum covers the best 25 bids and asks
BOOK_PRECISION = "P0"
BOOK_FREQUENCY = "F0"
BOOK_LENGTHS = ("1", "25", "100", "250")
MAX_CHANNELS_PER_CONNECTION = 25  # Bitfinex's limit of public channels per connection
# Bitfinex's short currency codes that differ from the common ones.
ALIASES = {"UST": "USDT", "DSH": "DASH", "IOT": "IOTA", "QTM": "QTUM", "MNA": "MANA", "ALG": "ALGO", "ATO": "ATOM"}


def book_length(levels: int) -> str:
    return next((n for n in BOOK_LENGTHS if int(n) >= levels), BOOK_LENGTHS[-1])
