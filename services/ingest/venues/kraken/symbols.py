"""Kraken websocket pair names (``XBT/USD``) <-> unified ``BASE/QUOTE`` (``BTC/USD``), from AssetPairs."""

from __future__ import annotations

import msgspec

from services.ingest.feed import SymbolMap
from services.ingest.venues.kraken.config import ASSET_ALIASES


class _Pair(msgspec.Struct):
    wsname: str = ""  # dark-pool pairs (``XETHZGBP.d``) have none: not on the websocket


class _AssetPairs(msgspec.Struct):
    result: dict[str, _Pair]
    error: list[str] = []


def unified_of(wsname: str) -> str:
    base, _, quote = wsname.partition("/")
    return f"{ASSET_ALIASES.get(base, base)}/{ASSET_ALIASES.get(quote, quote)}"


def parse_markets(body: bytes | str) -> SymbolMap:
    """``{"error":[],"result":{"XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD",...},...}}`` -> map."""
    try:
        pairs = msgspec.json.decode(body, type=_AssetPairs)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a Kraken AssetPairs body: {exc}") from None
    return SymbolMap({p.wsname: unified_of(p.wsname) for p in pairs.result.values() if p.wsname})
