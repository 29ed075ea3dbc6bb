"""Bitfinex trading pairs (``tBTCUSD``, ``tAAVE:USD``) <-> unified ``BASE/QUOTE`` (``BTC/USD``),
from ``GET /v2/conf/pub:list:pair:exchange`` (``[["AAABBB","AAVE:USD","ADABTC",...]]``)."""

from __future__ import annotations

import msgspec

from services.ingest.feed import SymbolMap
from services.ingest.venues.bitfinex.config import ALIASES


def unified_of(pair: str) -> str | None:
    base, quote = pair.split(":", 1) if ":" in pair else (pair[:3], pair[3:])
    if len(pair) != 6 and ":" not in pair:
        return None
    return f"{ALIASES.get(base, base)}/{ALIASES.get(quote, quote)}"


def parse_markets(body: bytes | str) -> SymbolMap:
    try:
        lists = msgspec.json.decode(body, type=list[list[str]])
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a Bitfinex pub:list:pair body: {exc}") from None
    out: dict[str, str] = {}
    taken: set[str] = set()
    for pair in (p for names in lists for p in names):
        unified = unified_of(pair)
        if unified and unified not in taken:  # UST and USDT pairs alias: the first keeps the name
            taken.add(unified)
            out["t" + pair] = unified
    return SymbolMap(out)
