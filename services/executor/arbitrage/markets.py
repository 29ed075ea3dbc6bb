"""Venue market lists → `Market` rules (lot step, minimum amount and notional, tick, taker fee).

Two formats are understood, detected from their shape:
- Binance ``GET /api/v3/exchangeInfo`` (``{"symbols": [{"baseAsset", "quoteAsset", "filters"...}]}``);
  it carries no fees, so every market gets the default taker fee.
- ccxt markets (``exchange.load_markets()`` dumped as JSON: a dict keyed by symbol, or the list of
  ``fetch_markets()``), with ``precision`` in ccxt's default TICK_SIZE mode (a step, not a digit count).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class MarketFileError(ValueError):
    """A market list could not be read; the message names the file and what was wrong."""


@dataclass(frozen=True, slots=True)
class Market:
    """One spot market and the rules an order on it must respect (0 means no constraint).

    Static rules, unlike the risk crash detector's ``Market`` (running price statistics of one venue's
    market) and ``services.risk.replay.MarketMessage`` (a replayed message)."""

    symbol: str
    base: str
    quote: str
    taker_fee: float
    step: float = 0.0
    min_amount: float = 0.0
    min_notional: float = 0.0
    tick: float = 0.0


def markets_from_symbols(symbols: Iterable[str], taker_fee: float) -> list[Market]:
    """Build unconstrained markets from ``BASE/QUOTE`` symbols, all with the same taker fee."""
    markets = []
    for symbol in symbols:
        base, sep, quote = symbol.partition("/")
        if not sep or not base or not quote or "/" in quote:
            raise MarketFileError(f"symbol {symbol!r} is not of the form BASE/QUOTE")
        markets.append(Market(symbol, base, quote, taker_fee))
    return markets


def load_markets(path: str | Path, default_taker_fee: float) -> list[Market]:
    """Read a market list file (``.gz`` allowed) in either supported format; only tradable spot markets."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except EOFError:
        raise MarketFileError(f"{path}: the compressed file ends early (truncated?)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, zlib.error) as exc:
        raise MarketFileError(f"{path}: cannot read market list: {exc}") from None
    try:
        if isinstance(data, dict) and isinstance(data.get("symbols"), list):
            return _binance_exchange_info(data["symbols"], default_taker_fee)
        entries = list(data.values()) if isinstance(data, dict) else data
        if isinstance(entries, list) and entries and all(_is_ccxt_market(e) for e in entries):
            return _ccxt_markets(entries, default_taker_fee)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MarketFileError(f"{path}: malformed market entry: {exc!r}") from None
    raise MarketFileError(
        f"{path}: unrecognised market list: expected Binance exchangeInfo (an object with a 'symbols' "
        "list) or ccxt markets (objects with 'symbol', 'base' and 'quote')"
    )


def _binance_exchange_info(symbols: list[dict[str, Any]], taker_fee: float) -> list[Market]:
    markets = []
    for entry in symbols:
        if entry.get("status") != "TRADING" or entry.get("isSpotTradingAllowed") is False:
            continue
        filters = {f["filterType"]: f for f in entry.get("filters", [])}
        lot = filters.get("LOT_SIZE", {})
        # Newer exchangeInfo replaced MIN_NOTIONAL with NOTIONAL; both carry minNotional.
        notional = filters.get("MIN_NOTIONAL") or filters.get("NOTIONAL") or {}
        markets.append(
            Market(
                symbol=f"{entry['baseAsset']}/{entry['quoteAsset']}",
                base=entry["baseAsset"],
                quote=entry["quoteAsset"],
                taker_fee=taker_fee,
                step=float(lot.get("stepSize", 0)),
                min_amount=float(lot.get("minQty", 0)),
                min_notional=float(notional.get("minNotional", 0)),
                tick=float(filters.get("PRICE_FILTER", {}).get("tickSize", 0)),
            )
        )
    return markets


def _is_ccxt_market(entry: object) -> bool:
    return isinstance(entry, Mapping) and all(k in entry for k in ("symbol", "base", "quote"))


def _ccxt_markets(entries: list[dict[str, Any]], taker_fee: float) -> list[Market]:
    markets = []
    for entry in entries:
        if entry.get("active") is False or entry.get("spot") is False:
            continue
        precision = entry.get("precision") or {}
        limits = entry.get("limits") or {}
        fee = entry.get("taker")
        markets.append(
            Market(
                symbol=entry["symbol"],
                base=entry["base"],
                quote=entry["quote"],
                taker_fee=taker_fee if fee is None else float(fee),
                step=float(precision.get("amount") or 0),
                min_amount=float((limits.get("amount") or {}).get("min") or 0),
                min_notional=float((limits.get("cost") or {}).get("min") or 0),
                tick=float(precision.get("price") or 0),
            )
        )
    return markets
