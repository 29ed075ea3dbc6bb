"""Venue trading rules (tick size, lot size, min notional, price band) and the rejections they cause.

Reason codes mirror Binance's filter failures (``Filter failure: LOT_SIZE`` → ``venue.lot_size``)
so a strategy sees in paper exactly the rejections it would get live.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """One market's filters; zero means "no such filter"."""

    symbol: str
    base: str
    quote: str
    tick_size: Decimal = ZERO
    min_price: Decimal = ZERO
    max_price: Decimal = ZERO
    step_size: Decimal = ZERO
    min_qty: Decimal = ZERO
    max_qty: Decimal = ZERO
    min_notional: Decimal = ZERO
    percent_up: Decimal = ZERO  # PERCENT_PRICE multiplierUp
    percent_down: Decimal = ZERO

    def check(self, price: Decimal | None, amount: Decimal, reference: Decimal | None) -> str | None:
        """Return the rejection reason for an order, or None when the venue would accept it.

        ``price`` is None for a market order (the notional is then checked at ``reference``).
        """
        if price is not None:
            if price <= 0 or (self.min_price and price < self.min_price) or (self.max_price and price > self.max_price):
                return "venue.price_filter"
            if self.tick_size and (price - self.min_price) % self.tick_size:
                return "venue.price_filter"
        if amount <= 0 or (self.min_qty and amount < self.min_qty) or (self.max_qty and amount > self.max_qty):
            return "venue.lot_size"
        if self.step_size and (amount - self.min_qty) % self.step_size:
            return "venue.lot_size"
        at = price if price is not None else reference
        if at is not None and self.min_notional and at * amount < self.min_notional:
            return "venue.min_notional"
        in_band = price is None or not reference or not self.percent_up
        if not in_band and not reference * self.percent_down <= price <= reference * self.percent_up:  # type: ignore[operator]
            return "venue.percent_price"
        return None


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTC/USDT`` → (``BTC``, ``USDT``); the error names the bad symbol."""
    base, sep, quote = symbol.partition("/")
    if not sep or not base or not quote:
        raise ValueError(f"symbol {symbol!r} is not in BASE/QUOTE form")
    return base, quote


def permissive(symbol: str) -> SymbolRules:
    """Rules for a market whose filters are unknown: only positivity is enforced."""
    base, quote = split_symbol(symbol)
    return SymbolRules(symbol, base, quote)


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else ZERO


def from_binance_symbol(info: dict[str, Any]) -> SymbolRules:
    """Build rules from one entry of Binance's ``GET /api/v3/exchangeInfo`` ``symbols`` list."""
    filters = {f["filterType"]: f for f in info.get("filters", [])}
    price = filters.get("PRICE_FILTER", {})
    lot = filters.get("LOT_SIZE", {})
    notional = filters.get("MIN_NOTIONAL") or filters.get("NOTIONAL") or {}
    band = filters.get("PERCENT_PRICE") or filters.get("PERCENT_PRICE_BY_SIDE") or {}
    return SymbolRules(
        symbol=f"{info['baseAsset']}/{info['quoteAsset']}",
        base=info["baseAsset"],
        quote=info["quoteAsset"],
        tick_size=_dec(price.get("tickSize")),
        min_price=_dec(price.get("minPrice")),
        max_price=_dec(price.get("maxPrice")),
        step_size=_dec(lot.get("stepSize")),
        min_qty=_dec(lot.get("minQty")),
        max_qty=_dec(lot.get("maxQty")),
        min_notional=_dec(notional.get("minNotional")),
        percent_up=_dec(band.get("multiplierUp") or band.get("bidMultiplierUp")),
        percent_down=_dec(band.get("multiplierDown") or band.get("askMultiplierDown")),
    )


def load_binance_exchange_info(text: str) -> dict[str, SymbolRules]:
    """Parse an exchangeInfo body into rules keyed by unified symbol (trading markets only)."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"exchangeInfo is not JSON: {exc}") from None
    return {
        r.symbol: r
        for r in (from_binance_symbol(s) for s in body.get("symbols", []) if s.get("status", "TRADING") == "TRADING")
    }
