"""OKX public websocket API v5 as data: channels, limits, checksum depth.

Hosts are settings (``ingest.venues.okx.base_url_ws`` = ``wss://ws.okx.com:8443``,
``base_url_http`` = ``https://www.okx.com``), never constants here.
"""

from __future__ import annotations

WS_PATH = "/ws/v5/public"
MARKETS_PATH = "/api/v5/public/instruments?instType=SPOT"
# The market list is one REST body per instrument type; all are fetched and merged.
MARKETS_PATHS = tuple(f"/api/v5/public/instruments?instType={t}" for t in ("SPOT", "SWAP", "FUTURES"))
MARKETS_FILE = "okx_instruments.jsonl.gz"  # SPOT and SWAP bodies, one per line
BOOK_CHANNEL = "books"  # 400 levels, snapshot + updates with checksum (and seqId/prevSeqId)
BOOK_CHANNELS = ("books", "books-l2-tbt", "books50-l2-tbt")  # same message shape
TRADE_CHANNEL = "trades"
CHECKSUM_LEVELS = 25
MAX_ARGS_PER_SUBSCRIBE = 100
MAX_INSTRUMENTS_PER_CONNECTION = 100
PING_INTERVAL_S = 25.0  # OKX closes a connection that sent nothing for 30 s; "ping" -> "pong"
