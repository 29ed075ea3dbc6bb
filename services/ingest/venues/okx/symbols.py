"""OKX instrument ids <-> unified symbols, from ``GET /api/v5/public/instruments``.

Spot ``BTC-USDT`` is ``BTC/USDT``; derivatives follow ccxt, so they never collide with spot:
swap ``BTC-USD-SWAP`` is ``BTC/USD:BTC`` (settled in BTC), future ``BTC-USD-220527`` is
``BTC/USD:BTC-220527``, option ``BTC-USD-220527-30000-C`` is ``BTC/USD:BTC-220527-30000-C``.
"""

from __future__ import annotations

import msgspec

from services.ingest.feed import SymbolMap


class _Instrument(msgspec.Struct):
    instId: str
    instType: str
    baseCcy: str = ""
    quoteCcy: str = ""
    settleCcy: str = ""
    uly: str = ""


class _Instruments(msgspec.Struct):
    data: list[_Instrument]
    code: str = "0"


def unified_of(inst: _Instrument) -> str | None:
    if inst.instType in ("SPOT", "MARGIN"):
        return f"{inst.baseCcy}/{inst.quoteCcy}" if inst.baseCcy and inst.quoteCcy else None
    base, _, quote = inst.uly.partition("-")
    if not (base and quote and inst.settleCcy):
        return None
    unified = f"{base}/{quote}:{inst.settleCcy}"
    if inst.instType == "SWAP":
        return unified
    suffix = inst.instId[len(inst.uly) + 1 :]
    return f"{unified}-{suffix}" if suffix else None


def instruments(body: bytes | str) -> dict[str, str]:
    """One instruments body: ``{"code":"0","data":[{"instId":"BTC-USDT","instType":"SPOT",...}]}``."""
    try:
        parsed = msgspec.json.decode(body, type=_Instruments)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not an OKX instruments body: {exc}") from None
    return {i.instId: u for i in parsed.data if (u := unified_of(i))}


def parse_markets(body: bytes | str) -> SymbolMap:
    """One instruments body, or several one per line (the shipped list)."""
    text = body.decode() if isinstance(body, bytes) else body
    try:
        return SymbolMap(instruments(text))
    except ValueError:
        if "\n" not in text.strip():
            raise
    merged: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            merged.update(instruments(line))
    return SymbolMap(merged)
