"""Bitstamp websocket API v2 as data: channels and REST paths.

Hosts are settings (``ingest.venues.bitstamp.base_url_ws`` = ``wss://ws.bitstamp.net``,
``base_url_http`` = ``https://www.bitstamp.net``), never constants here.
"""

from __future__ import annotations

MARKETS_PATH = "/api/v2/trading-pairs-info/"
MARKETS_FILE = "bitstamp_trading-pairs-info.json.gz"
SNAPSHOT_PATH = "/api/v2/order_book/{pair}/"
TRADE_CHANNEL = "live_trades_"
BOOK_CHANNEL = "diff_order_book_"
SNAPSHOT_CHANNEL = "order_book_"  # top-100 snapshots, not used: diffs + REST give the full book
MAX_PAIRS_PER_CONNECTION = 100
SUBSCRIBE_PAUSE_S = 0.01  # one subscribe event per channel; keep them from arriving as a burst
