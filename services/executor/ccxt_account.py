"""A live venue's account seen whole through ccxt: its client (keys, testnet, URL overrides), every
wallet's balances, open positions, and the audit that compares what the venue holds with what our own
fills and loans say it should hold.

Wallet names are those of ``services.executor.gateway.VenueBalance``: ``spot``, ``cross``,
``isolated:BASE/QUOTE`` and ``futures`` (USD-M).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.executor.gateway import VenueBalance, VenueOrder
from shared.paper import dec
from shared.paper.positions import Position
from shared.sections.executor import CcxtVenue

_NOT_ASSETS = {"info", "free", "used", "total", "debt", "timestamp", "datetime"}


def make_exchange(venue: CcxtVenue) -> Any:
    """A ccxt pro exchange for ``venue``: keys from SecretStr, testnet first, then URL overrides.

    A URL key with dots sets a nested entry: ``ws.ws-api.spot`` is ``urls['api']['ws']['ws-api']['spot']``.
    """
    import ccxt.pro as ccxt_pro

    cls = getattr(ccxt_pro, venue.ccxt_id, None)
    if cls is None:
        raise ValueError(f"ccxt has no exchange class {venue.ccxt_id!r}")
    exchange = cls(
        {
            "apiKey": venue.api_key.get_secret_value() if venue.api_key else None,
            "secret": venue.secret.get_secret_value() if venue.secret else None,
            "enableRateLimit": True,
            "timeout": venue.timeout_ms,
            "options": {
                "fetchMarkets": {"types": list(venue.market_types)},
                "fetchMargins": venue.margin,
                "fetchCurrencies": False,
                "recvWindow": venue.receive_window_ms,
            },
        }
    )
    exchange.options.setdefault("fetchOpenOrders", {})["warnWithoutSymbol"] = False
    exchange.options["warnOnFetchOpenOrdersWithoutSymbol"] = False
    if venue.testnet:
        exchange.set_sandbox_mode(True)  # swaps in the test URLs; our overrides below still win
    for key, url in venue.urls.items():
        *path, last = key.split(".")
        node = exchange.urls["api"]
        for part in path:
            node = node.setdefault(part, {})
        node[last] = url
    return exchange


async def transfer_to_margin(client: Any, asset: str, amount: Decimal) -> str:
    """Move ``amount`` of ``asset`` from the spot wallet into the cross-margin wallet (an internal
    transfer: instant and free on Binance); the risk rule's margin top-up. Returns the venue's transfer id."""
    result = await client.transfer(asset, float(amount), "spot", "margin")
    return str(result.get("id") or (result.get("info") or {}).get("tranId"))


def _rows(venue: str, wallet: str, bal: dict[str, Any]) -> list[VenueBalance]:
    out = []
    for asset, b in bal.items():
        if asset in _NOT_ASSETS or not isinstance(b, dict):
            continue
        free, used, debt = dec(b.get("free") or 0), dec(b.get("used") or 0), dec(b.get("debt") or 0)
        if free or used or debt:
            out.append(VenueBalance(venue, wallet, asset, free, used, debt))
    return out


async def wallet_balances(venue: str, cfg: CcxtVenue, client: Any) -> list[VenueBalance]:
    """Every wallet of ``venue``: spot, and where configured cross margin, isolated margin per symbol, futures."""
    out = _rows(venue, "spot", await client.fetch_balance())
    if cfg.margin:
        out += _rows(venue, "cross", await client.fetch_balance({"type": "margin", "marginMode": "cross"}))
        isolated = await client.fetch_balance({"type": "margin", "marginMode": "isolated"})
        out += _isolated_rows(venue, client, isolated)
    if "linear" in cfg.market_types:
        out += _rows(venue, "futures", await client.fetch_balance({"type": "future"}))
    return out


def _isolated_rows(venue: str, client: Any, bal: dict[str, Any]) -> list[VenueBalance]:
    """One wallet per isolated pair: ccxt nests them by symbol, or (Binance) flattens them, leaving the
    pairs in the raw answer's ``assets``."""
    out = []
    for symbol, nested in bal.items():
        if "/" in symbol and isinstance(nested, dict):
            out += _rows(venue, f"isolated:{symbol}", nested)
    raw = (bal.get("info") or {}).get("assets") if not out else None
    for pair in raw or []:
        symbol = client.safe_symbol(pair.get("symbol"), None, None, "spot")
        rows: dict[str, Any] = {}
        for side in ("baseAsset", "quoteAsset"):
            a = pair.get(side) or {}
            free, locked = dec(a.get("free") or 0), dec(a.get("locked") or 0)
            debt = dec(a.get("borrowed") or 0) + dec(a.get("interest") or 0)
            rows[str(a.get("asset"))] = {"free": free, "used": locked, "debt": debt}
        out += _rows(venue, f"isolated:{symbol}", rows)
    return out


async def open_positions(venue: str, cfg: CcxtVenue, client: Any) -> list[Position]:
    """Open futures positions of ``venue`` (margin shorts show up as loans in ``wallet_balances``)."""
    if "linear" not in cfg.market_types:
        return []
    out = []
    for p in await client.fetch_positions():
        contracts = dec(p.get("contracts") or 0) * dec(p.get("contractSize") or 1)
        if not contracts:
            continue
        signed = -contracts if p.get("side") == "short" else contracts
        liq = p.get("liquidationPrice")
        out.append(
            Position(
                venue,
                p["symbol"],
                "futures",
                signed,
                dec(p.get("entryPrice") or 0),
                liquidation_price=dec(liq) if liq else None,
            )
        )
    return out


async def venue_open_orders(venue: str, cfg: CcxtVenue, client: Any) -> list[VenueOrder]:
    """Open orders of every wallet of ``venue``."""
    params: list[dict[str, Any]] = [{}]
    if cfg.margin:
        params.append({"marginMode": "cross"})
    out = []
    for p in params:
        for o in await client.fetch_open_orders(None, None, None, p):
            out.append(
                VenueOrder(
                    o.get("clientOrderId") or "",
                    venue,
                    o["symbol"],
                    o["side"],
                    dec(o["amount"]),
                    dec(o.get("filled") or 0),
                    dec(o["price"]) if o.get("price") else None,
                    "accepted",
                )
            )
    return out


def balance_differences(
    venue: str, expected: dict[tuple[str, str], Decimal], actual: list[VenueBalance], tolerance: float
) -> list[str]:
    """What differs between the totals we expect per (wallet, asset) and what the venue reports."""
    seen = {(b.wallet, b.asset): b.free + b.locked - b.borrowed for b in actual}
    out = []
    for key in sorted(set(expected) | set(seen)):
        want, got = expected.get(key, Decimal(0)), seen.get(key, Decimal(0))
        if abs(got - want) > Decimal(repr(tolerance)) * max(abs(want), abs(got), Decimal(1)):
            wallet, asset = key
            out.append(f"{venue} {wallet} {asset}: venue has {got}, our fills and loans say {want}")
    return out


def totals(balances: list[VenueBalance]) -> dict[tuple[str, str], Decimal]:
    """Net totals per (wallet, asset): free + locked - borrowed."""
    return {(b.wallet, b.asset): b.free + b.locked - b.borrowed for b in balances}
