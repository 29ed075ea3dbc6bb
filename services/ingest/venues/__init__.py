"""Exchange venues, one package each, behind the ``Venue`` interface of ``base.py``.

``NAMES`` maps each exchange name (fixed in DESIGN.md) to the package that implements it;
a venue's modules are imported only when it is used.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType

from services.ingest.venues.base import Venue

# exchange name -> "module:attribute" of its Venue object. Add a line here for a new venue.
NAMES = MappingProxyType(
    {
        "binance": "services.ingest.venues.binance:BINANCE_VENUE",
        "binance_us": "services.ingest.venues.binance:BINANCE_US_VENUE",
        "binance_futures": "services.ingest.venues.binance:BINANCE_FUTURES_VENUE",
        "coinbase": "services.ingest.venues.coinbase:COINBASE_VENUE",
        "kraken": "services.ingest.venues.kraken:KRAKEN_VENUE",
        "okx": "services.ingest.venues.okx:OKX_VENUE",
        "bybit": "services.ingest.venues.bybit:BYBIT_VENUE",
        "bitstamp": "services.ingest.venues.bitstamp:BITSTAMP_VENUE",
        "bitfinex": "services.ingest.venues.bitfinex:BITFINEX_VENUE",
        "gemini": "services.ingest.venues.gemini:GEMINI_VENUE",
    }
)

# Venues that are generated, never recorded (so no capture is ever read as one): `tradewind up --mode synth`.
GENERATED = MappingProxyType({"synth": "services.ingest.venues.binance:SYNTH_VENUE"})


class UnknownVenue(KeyError):
    def __str__(self) -> str:
        return f"unknown exchange {self.args[0]!r}; supported: {', '.join(sorted(NAMES))}"


def get(exchange: str) -> Venue:
    """The venue adapter of ``exchange``."""
    try:
        target = NAMES[exchange] if exchange in NAMES else GENERATED[exchange]
    except KeyError:
        raise UnknownVenue(exchange) from None
    module, attr = target.split(":")
    venue = getattr(importlib.import_module(module), attr)
    assert isinstance(venue, Venue)
    return venue
