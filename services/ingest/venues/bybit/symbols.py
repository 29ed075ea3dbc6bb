"""Bybit v5 symbols (``XRPUSDT``) <-> unified ccxt-style ``XRP/USDT:USDT`` (linear, settled in USDT).

From ``GET /v5/market/instruments-info?category=linear`` when the venue is reachable; offline
(no list shipped: Bybit's v5 list is not in the recorded data) by splitting on the quote coin.
"""

from __future__ import annotations

import msgspec

from services.ingest.feed import SymbolMap
from services.ingest.venues.bybit.config import QUOTES


class _Instrument(msgspec.Struct):
    symbol: str
    baseCoin: str
    quoteCoin: str
    settleCoin: str = ""


class _Result(msgspec.Struct):
    instruments: list[_Instrument] = msgspec.field(name="list")
    category: str = "linear"


class _Response(msgspec.Struct):
    result: _Result
    retCode: int = 0


def parse_markets(body: bytes | str) -> SymbolMap:
    """``{"retCode":0,"result":{"category":"linear","list":[{"symbol":"BTCUSDT","baseCoin":"BTC",
    "quoteCoin":"USDT","settleCoin":"USDT",...}]}}`` -> symbol map."""
    try:
        response = msgspec.json.decode(body, type=_Response)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a Bybit v5 instruments-info body: {exc}") from None
    return SymbolMap(
        {i.symbol: f"{i.baseCoin}/{i.quoteCoin}:{i.settleCoin or i.quoteCoin}" for i in response.result.instruments}
    )


def guess_unified(symbol: str) -> str | None:
    """``XRPUSDT`` -> ``XRP/USDT:USDT``; None when no known quote coin ends it."""
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}/{quote}:{quote}"
    return None
