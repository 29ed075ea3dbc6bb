"""Coinbase product ids (``BTC-USD``) <-> unified ``BASE/QUOTE``, from ``GET /products``."""

from __future__ import annotations

import msgspec

from services.ingest.feed import SymbolMap


class _Product(msgspec.Struct):
    id: str
    base_currency: str
    quote_currency: str


def parse_markets(body: bytes | str) -> SymbolMap:
    """``[{"id":"SKL-EUR","base_currency":"SKL","quote_currency":"EUR",...}, ...]`` -> symbol map."""
    try:
        products = msgspec.json.decode(body, type=list[_Product])
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a Coinbase /products body: {exc}") from None
    return SymbolMap({p.id: f"{p.base_currency}/{p.quote_currency}" for p in products})
