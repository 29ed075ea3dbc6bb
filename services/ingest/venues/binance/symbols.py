"""Binance symbols (``BNBBTC``) <-> unified ``BASE/QUOTE`` (``BNB/BTC``), from exchangeInfo.

The market list comes from the venue (``GET exchangeInfo``), from a capture's own start-up
file, from a file the user names, or - when none is at hand - from the copy shipped beside
this module (see ``markets/README.md`` for where each came from).
"""

from __future__ import annotations

import gzip
from importlib import resources

import msgspec

from services.ingest.feed import SymbolMap
from services.ingest.venues.binance.config import BinanceSpec


class _Market(msgspec.Struct):
    symbol: str
    baseAsset: str
    quoteAsset: str
    contractType: str = ""  # futures: PERPETUAL, CURRENT_QUARTER, ...; spot: absent


class _ExchangeInfo(msgspec.Struct):
    symbols: list[_Market]


# Quote assets tried, longest first, when a symbol is missing from the market list.
_QUOTES = (
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "BIDR", "BVND", "IDRT", "DOWN", "AEUR",
    "USD", "BTC", "ETH", "BNB", "EUR", "GBP", "TRY", "RUB", "AUD", "BRL", "UAH", "NGN", "ZAR",
    "PAX", "DAI", "XRP", "TRX", "DOGE", "JPY", "MXN", "ARS", "PLN", "RON", "COP", "CZK",
)  # fmt: skip


def unified_of(market: _Market) -> str:
    unified = f"{market.baseAsset}/{market.quoteAsset}"
    if market.contractType and market.contractType != "PERPETUAL" and "_" in market.symbol:
        unified += "-" + market.symbol.rsplit("_", 1)[1]  # dated futures: BTC/USDT-210924
    return unified


def parse_markets(body: bytes | str) -> SymbolMap:
    """Build the symbol map from an exchangeInfo response body."""
    try:
        info = msgspec.json.decode(body, type=_ExchangeInfo)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a Binance exchangeInfo body: {exc}") from None
    return SymbolMap({m.symbol: unified_of(m) for m in info.symbols})


def shipped_markets(spec: BinanceSpec) -> SymbolMap:
    """The market list shipped with Tradewind for this venue."""
    data = resources.files("services.ingest.venues.binance").joinpath("markets", spec.markets_file).read_bytes()
    return parse_markets(gzip.decompress(data))


def guess_unified(venue_symbol: str) -> str | None:
    """Split an unknown symbol on a known quote asset (``NEWCOINUSDT`` -> ``NEWCOIN/USDT``)."""
    base = venue_symbol.split("_", 1)[0].upper()
    for quote in sorted(_QUOTES, key=len, reverse=True):
        if base.endswith(quote) and len(base) > len(quote):
            return f"{base[: -len(quote)]}/{quote}"
    return None
