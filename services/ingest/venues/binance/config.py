"""Binance's three public market-data APIs as data: paths, limits, sequence rule.

Spot and Binance.US share one wire format (different hosts); USD-M futures differ in paths,
in the depth sequence rule (``pu`` = previous ``u``) and in having ``T`` on every event.
Hosts are never here: they are ``ingest.venues.<name>.base_url_ws`` / ``base_url_http``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
class BinanceSpec:
    exchange: str
    ws_path: str  # combined streams: frames arrive as {"stream": ..., "data": ...}
    depth_path: str  # REST order-book snapshot
    markets_path: str  # REST market list (exchangeInfo)
    sequence: Literal["spot", "futures"]
    max_streams_per_connection: int  # Binance closes connections asking for more
    max_params_per_subscribe: int  # keeps each SUBSCRIBE frame small
    max_messages_per_second: int  # incoming-message limit per connection (SUBSCRIBE frames count)
    markets_file: str  # the market list shipped with Tradewind, used when the venue's cannot be read


BINANCE = BinanceSpec(
    exchange="binance",
    ws_path="/stream",
    depth_path="/api/v3/depth",
    markets_path="/api/v3/exchangeInfo",
    sequence="spot",
    max_streams_per_connection=1024,
    max_params_per_subscribe=200,
    max_messages_per_second=5,
    markets_file="binance_spot_exchangeInfo.json.gz",
)

BINANCE_US = BinanceSpec(
    exchange="binance_us",
    ws_path="/stream",
    depth_path="/api/v3/depth",
    markets_path="/api/v3/exchangeInfo",
    sequence="spot",
    max_streams_per_connection=1024,
    max_params_per_subscribe=200,
    max_messages_per_second=5,
    markets_file="binance_us_exchangeInfo.json.gz",
)

BINANCE_FUTURES = BinanceSpec(
    exchange="binance_futures",
    ws_path="/stream",
    depth_path="/fapi/v1/depth",
    markets_path="/fapi/v1/exchangeInfo",
    sequence="futures",
    max_streams_per_connection=200,
    max_params_per_subscribe=200,
    max_messages_per_second=10,
    markets_file="binance_usdm_exchangeInfo.json.gz",
)

# `tradewind up --mode synth`: a generated market (services/ingest/synth.py) served in Binance spot's format
# by the replay exchange; it lists its one market itself, so the shipped list is Binance's, never used.
SYNTH = replace(BINANCE, exchange="synth")

SPECS = {spec.exchange: spec for spec in (BINANCE, BINANCE_US, BINANCE_FUTURES)}

# Channels this feed normalizes; every other channel in a capture is skipped quietly (counted).
TRADE_CHANNELS = ("trade", "aggTrade")
DEPTH_CHANNEL = "depth"
