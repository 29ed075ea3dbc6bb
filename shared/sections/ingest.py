"""Settings of the ingest area (`TRADEWIND_INGEST__...`).

Every venue's base URLs are settings, never module constants: the same connector runs against
the live venue, the built-in replay exchange, or a test server, by changing only these.
Nested keys use ``__`` in the environment, e.g.
``TRADEWIND_INGEST__VENUES__BINANCE__SYMBOLS='["BTC/USDT","ETH/USDT"]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from shared.sections.base import Section


class VenueSettings(Section):
    """One venue: where it is, what to subscribe to, and its connection limits."""

    enabled: bool = True
    base_url_ws: str = Field(description="websocket base URL, without the venue's stream path")
    base_url_http: str = Field(description="REST base URL (snapshots, market list), without the API path")
    symbols: list[str] = Field(default_factory=list, description="unified BASE/QUOTE symbols to subscribe to")
    trades: bool = True
    book: bool = True
    trade_channel: str = Field("trade", description="venue channel for trades (Binance: trade or aggTrade)")
    depth_interval_ms: int = Field(100, ge=0, description="Binance diff-depth speed: 100 (spot/futures) or 0")
    snapshot_limit: int = Field(1000, ge=5, le=5000, description="levels asked of the REST depth snapshot")
    max_streams_per_connection: int | None = Field(None, ge=1, description="None: the venue's own limit")

    @field_validator("symbols")
    @classmethod
    def _unified(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if s.count("/") != 1]
        if bad:
            raise ValueError(f"symbols must be unified BASE/QUOTE (e.g. BTC/USDT), got {bad}")
        return value


def _default_venues() -> dict[str, VenueSettings]:
    return {
        "binance": VenueSettings(
            base_url_ws="wss://stream.binance.com:9443",
            base_url_http="https://api.binance.com",
            symbols=["BTC/USDT", "ETH/USDT"],
        ),
        "binance_us": VenueSettings(
            enabled=False,
            base_url_ws="wss://stream.binance.us:9443",
            base_url_http="https://api.binance.us",
            symbols=["BTC/USDT"],
        ),
        "binance_futures": VenueSettings(
            base_url_ws="wss://fstream.binance.com",
            base_url_http="https://fapi.binance.com",
            symbols=["BTC/USDT"],
        ),
        "coinbase": VenueSettings(
            enabled=False,
            base_url_ws="wss://ws-feed.exchange.coinbase.com",
            base_url_http="https://api.exchange.coinbase.com",
            symbols=["BTC/USD", "ETH/USD"],
        ),
        "kraken": VenueSettings(
            enabled=False,
            base_url_ws="wss://ws.kraken.com",
            base_url_http="https://api.kraken.com",
            symbols=["BTC/USD", "ETH/USD"],
        ),
        "okx": VenueSettings(
            enabled=False,
            base_url_ws="wss://ws.okx.com:8443",
            base_url_http="https://www.okx.com",
            symbols=["BTC/USDT", "ETH/USDT"],
        ),
        "bybit": VenueSettings(
            enabled=False,
            base_url_ws="wss://stream.bybit.com",
            base_url_http="https://api.bybit.com",
            symbols=["BTC/USDT:USDT", "ETH/USDT:USDT"],
        ),
        "bitstamp": VenueSettings(
            enabled=False,
            base_url_ws="wss://ws.bitstamp.net",
            base_url_http="https://www.bitstamp.net",
            symbols=["BTC/USD", "ETH/USD"],
        ),
        "bitfinex": VenueSettings(
            enabled=False,
            base_url_ws="wss://api-pub.bitfinex.com",
            base_url_http="https://api-pub.bitfinex.com",
            symbols=["BTC/USD", "ETH/USD"],
        ),
        "gemini": VenueSettings(
            enabled=False,
            base_url_ws="wss://api.gemini.com",
            base_url_http="https://api.gemini.com",
            symbols=["BTC/USD", "ETH/USD"],
        ),
    }


class ReplaySettings(Section):
    """The built-in replay exchange that `tradewind up --mode replay` connects the connectors to."""

    data: Path | None = Field(None, description="capture file or folder; None: the sample named by `sample`")
    sample: Literal["default", "day"] = Field(
        "default",
        description="default: minutes of Binance/Coinbase shipped with ingest; day: 24 h of Bitstamp BTC/USD"
        " (2015, GPL-2.0, in the checkout's samples/bitstamp-day/, not in the wheel)",
    )
    speed: float = Field(1.0, ge=0, description="1 = recorded pace, 2 = twice as fast, 0 = as fast as possible")
    loop: bool = Field(True, description="start the capture again when it ends (a live-looking demo)")
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port")


class SynthSettings(Section):
    """The generated market of `tradewind up --mode synth` (shared/synth_market.py): exchange `synth`, SYN/USDT."""

    seed: int = Field(1, description="seed of the generated price path and trades")
    minutes: float = Field(
        60.0,
        gt=0,
        description="minutes of market generated at start (0.25 s steps); then the feed ends: a reconnect would"
        " replay it from its start, which the trainer refuses as a loop",
    )
    theta: float = Field(0.2, gt=0, lt=1, description="share of a deviation from the mean reverted per 0.25 s step")
    sigma: float = Field(0.004, gt=0, description="std of the log-price shock per step")
    drift: float = Field(0.0001, ge=0, description="fall of the mean log price per step (buy-and-hold loses)")


class RecorderSettings(Section):
    """The consumer that stores trades and periodic book snapshots in PostgreSQL."""

    enabled: bool = True
    group: str = "recorder"
    book_snapshot_interval_s: float = Field(10.0, gt=0, description="how often each book's top levels are stored")
    book_snapshot_depth: int = Field(20, ge=1, le=1000, description="levels per side in a stored snapshot")


class IngestSettings(Section):
    """Settings of the ingest area."""

    venues: dict[str, VenueSettings] = Field(default_factory=_default_venues)
    stale_after_s: float = Field(30.0, gt=0, description="no message for this long: md:status stale, reconnect")
    reconnect_min_s: float = Field(0.5, gt=0, description="first reconnect delay; doubles per failure, with jitter")
    reconnect_max_s: float = Field(30.0, gt=0)
    ping_interval_s: float = Field(20.0, gt=0, description="websocket ping interval (protocol-level heartbeat)")
    ping_timeout_s: float = Field(20.0, gt=0)
    max_frame_bytes: int = Field(16 * 2**20, ge=1024, description="larger frames close the connection")
    snapshot_retry_s: float = Field(1.0, gt=0, description="wait before asking again for a snapshot too old to use")
    max_buffered_deltas: int = Field(20_000, ge=10, description="deltas kept per symbol while waiting for a snapshot")
    replay: ReplaySettings = ReplaySettings()
    synth: SynthSettings = SynthSettings()
    recorder: RecorderSettings = RecorderSettings()
