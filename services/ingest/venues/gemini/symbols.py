"""Gemini symbols (``BTCUSD``) <-> unified ``BASE/QUOTE``.

``GET /v1/symbols/details/<symbol>`` names base and quote exactly; ``GET /v1/symbols`` only lists
names, which are split on the quote currency they end with.
"""

from __future__ import annotations

import msgspec

from services.ingest.feed import SymbolMap
from services.ingest.venues.gemini.config import QUOTES


class _Details(msgspec.Struct):
    symbol: str
    base_currency: str
    quote_currency: str


def split(symbol: str) -> str | None:
    upper = symbol.upper()
    for quote in QUOTES:
        if upper.endswith(quote) and len(upper) > len(quote):
            return f"{upper[: -len(quote)]}/{quote}"
    return None


def parse_markets(body: bytes | str) -> SymbolMap:
    """A details body, a list of them (the shipped file), or the ``/v1/symbols`` list of names."""
    try:
        value = msgspec.json.decode(body, type=_Details | list[_Details | str])
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a Gemini symbols or symbol-details body: {exc}") from None
    items = value if isinstance(value, list) else [value]
    out: dict[str, str] = {}
    for item in items:
        if isinstance(item, str):
            unified = split(item)
            if unified:
                out[item.upper()] = unified
        else:
            out[item.symbol.upper()] = f"{item.base_currency}/{item.quote_currency}"
    return SymbolMap(out)
