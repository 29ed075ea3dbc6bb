"""Bitstamp pairs (``btcusd``) <-> unified ``BASE/QUOTE`` (``BTC/USD``), from trading-pairs-info."""

from __future__ import annotations

import msgspec

from services.ingest.feed import SymbolMap


class _Pair(msgspec.Struct):
    url_symbol: str
    name: str


def parse_markets(body: bytes | str) -> SymbolMap:
    """``[{"trading":"Enabled","url_symbol":"btcusd","name":"BTC/USD",...},...]`` -> symbol map."""
    try:
        pairs = msgspec.json.decode(body, type=list[_Pair])
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a Bitstamp trading-pairs-info body: {exc}") from None
    return SymbolMap({p.url_symbol: p.name for p in pairs if p.name.count("/") == 1})
