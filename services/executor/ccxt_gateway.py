"""Live orders through ccxt (async), behind the same `Gateway` interface as the paper exchange.

Live trading has three gates (DESIGN.md, Safety): ``TRADEWIND_MODE=live`` with ``TRADEWIND_LIVE=1``,
API keys for every live venue (environment or secret files, never logged), and every risk limit of
every live venue set explicitly (``shared.pretrade.missing_limits``). ``live_gate`` names the first
closed one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

from services.executor.gateway import Report, VenueBalance, VenueOrder
from shared.config import Settings
from shared.paper import LedgerEntry, dec
from shared.paper.positions import Position
from shared.paper.rules import split_symbol
from shared.pretrade import missing_limits
from shared.schemas import Fill, OrderEvent, OrderIntent
from shared.schemas.messages import OrderStatus, Side
from shared.sections.executor import CcxtVenue

log = logging.getLogger(__name__)

_STATUS = {
    "open": "accepted",
    "closed": "filled",
    "canceled": "cancelled",
    "cancelled": "cancelled",
    "expired": "cancelled",
    "rejected": "rejected",
}


class LiveGateClosed(RuntimeError):
    """Live trading was asked for but one of its gates is closed; the message says which."""


def live_gate(settings: Settings) -> str | None:
    """Return why live orders are not allowed, or None when every gate is open."""
    if settings.mode != "live":
        return f"mode is {settings.mode!r}: live orders need TRADEWIND_MODE=live"
    if not settings.live:
        return "TRADEWIND_LIVE=1 is not set"
    venues = settings.executor.live_venues
    if not venues:
        return "no live venue configured (TRADEWIND_EXECUTOR__LIVE_VENUES__<VENUE>__API_KEY / __SECRET)"
    for name, venue in venues.items():
        if venue.api_key is None or venue.secret is None:
            return f"no API key/secret for live venue {name!r} (environment or TRADEWIND_SECRETS_DIR file)"
    missing = missing_limits(settings.risk, sorted(venues))
    if missing:
        return "risk limits not configured: " + "; ".join(missing)
    return None


def make_exchange(venue: CcxtVenue) -> Any:
    """A ccxt async exchange for ``venue``: keys from SecretStr, spot markets only, URL overrides applied."""
    import ccxt.async_support as ccxt_async

    cls = getattr(ccxt_async, venue.ccxt_id, None)
    if cls is None:
        raise ValueError(f"ccxt has no exchange class {venue.ccxt_id!r}")
    exchange = cls(
        {
            "apiKey": venue.api_key.get_secret_value() if venue.api_key else None,
            "secret": venue.secret.get_secret_value() if venue.secret else None,
            "enableRateLimit": True,
            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False, "fetchCurrencies": False},
        }
    )
    # We list open orders of every symbol at once only when reconciling after a restart.
    exchange.options.setdefault("fetchOpenOrders", {})["warnWithoutSymbol"] = False
    exchange.options["warnOnFetchOpenOrdersWithoutSymbol"] = False
    for key, url in venue.urls.items():  # after any sandbox switch, so these win
        exchange.urls["api"][key] = url
    return exchange


class CcxtGateway:
    """Orders, balances, margin loans and allow-listed withdrawals on real venues via ccxt."""

    def __init__(
        self, venues: dict[str, CcxtVenue], exchange_factory: Callable[[CcxtVenue], Any] = make_exchange
    ) -> None:
        self.venues = venues
        self.clients = {name: exchange_factory(v) for name, v in venues.items()}
        self._open: dict[str, tuple[str, str, str, str]] = {}  # client id → (venue, symbol, venue id, side)
        self._seen_filled: dict[str, Decimal] = {}
        self._events: list[OrderEvent] = []
        self._ledger: list[LedgerEntry] = []

    def client(self, venue: str) -> Any:
        c = self.clients.get(venue)
        if c is None:
            raise KeyError(f"venue {venue!r} is not a configured live venue (known: {sorted(self.clients)})")
        return c

    async def submit(self, intent: OrderIntent) -> None:
        client = self.client(intent.exchange)
        if intent.cancel:
            known = self._open.get(intent.client_order_id)
            ref = {"origClientOrderId": intent.client_order_id}
            order = await client.cancel_order(known[2] if known else None, intent.symbol, ref)
            self._record(intent.client_order_id, intent.exchange, intent.symbol, intent.side, order)
            return
        params: dict[str, Any] = {"newClientOrderId": intent.client_order_id}
        kind = "market" if intent.order_type == "market" else "limit"
        if intent.order_type == "ioc":
            params["timeInForce"] = "IOC"
        if intent.order_type == "post_only":
            params["postOnly"] = True
        if intent.margin_mode:
            params["marginMode"] = intent.margin_mode
        try:
            order = await client.create_order(intent.symbol, kind, intent.side, intent.amount, intent.price, params)
        except Exception as exc:  # ccxt's InvalidOrder, InsufficientFunds, ... become a rejection
            reason = f"venue.{type(exc).__name__}"
            log.warning("%s rejected %s: %s", intent.exchange, intent.client_order_id, exc)
            self._events.append(
                OrderEvent(
                    intent.client_order_id,
                    intent.exchange,
                    intent.symbol,
                    intent.side,
                    "rejected",
                    _now_ns(client),
                    reason=reason,
                )
            )
            return
        self._record(intent.client_order_id, intent.exchange, intent.symbol, intent.side, order)

    def _record(self, cid: str, venue: str, symbol: str, side: str, order: dict[str, Any]) -> None:
        status = _STATUS.get(order.get("status") or "open", "accepted")
        filled = dec(order.get("filled") or 0)
        amount = dec(order.get("amount") or 0)
        new_fill = filled - self._seen_filled.get(cid, Decimal(0))
        fills = []
        base, quote = split_symbol(symbol)
        for i, t in enumerate(order.get("trades") or []):
            fee = t.get("fee") or {}
            fills.append(
                Fill(
                    f"{order.get('id')}-{t.get('id') or i}",
                    float(t["price"]),
                    float(t["amount"]),
                    float(fee.get("cost") or 0),
                    fee.get("currency") or quote,
                    int(t.get("timestamp") or 0) * 1_000_000,
                )
            )
        if not fills and new_fill > 0:
            avg = order.get("average") or order.get("price") or 0
            fills.append(
                Fill(
                    f"{order.get('id')}-{filled}",
                    float(avg),
                    float(new_fill),
                    0.0,
                    quote,
                    int(order.get("timestamp") or 0) * 1_000_000,
                )
            )
        for f in fills:
            self._ledger_fill(venue, symbol, side, base, quote, f)
        self._seen_filled[cid] = filled
        if status == "accepted" and filled > 0:
            status = "partially_filled"
        if status in ("accepted", "partially_filled"):
            self._open[cid] = (venue, symbol, str(order.get("id")), side)
        else:
            self._open.pop(cid, None)
        self._events.append(
            OrderEvent(
                cid,
                venue,
                symbol,
                cast(Side, side),
                cast(OrderStatus, status),
                int(order.get("timestamp") or 0) * 1_000_000,
                order_id=str(order.get("id") or ""),
                filled=float(filled),
                remaining=float(max(amount - filled, Decimal(0))),
                avg_price=float(order.get("average") or 0),
                fills=fills,
            )
        )

    def _ledger_fill(self, venue: str, symbol: str, side: str, base: str, quote: str, f: Fill) -> None:
        qty, notional = dec(f.amount), dec(f.price) * dec(f.amount)
        sign = 1 if side == "buy" else -1
        self._ledger += [
            LedgerEntry(venue, "spot", base, sign * qty, "fill", f.fill_id, f.ts),
            LedgerEntry(venue, "spot", quote, -sign * notional, "fill", f.fill_id, f.ts),
        ]
        if f.fee:
            self._ledger.append(LedgerEntry(venue, "spot", f.fee_asset, -dec(f.fee), "fee", f.fill_id, f.ts))

    async def poll(self) -> list[Report]:
        """Refresh orders still open (REST; a websocket user stream would replace this polling)."""
        for cid, (venue, symbol, oid, side) in list(self._open.items()):
            order = await self.client(venue).fetch_order(oid, symbol)
            if dec(order.get("filled") or 0) != self._seen_filled.get(cid) or order.get("status") != "open":
                self._record(cid, venue, symbol, side, order)
        events, self._events = self._events, []
        return [(e, 0) for e in events]

    def drain_ledger(self) -> list[LedgerEntry]:
        out, self._ledger = self._ledger, []
        return out

    async def knows(self, client_order_id: str, exchange: str, symbol: str) -> bool:
        try:
            order = await self.client(exchange).fetch_order(None, symbol, {"origClientOrderId": client_order_id})
        except Exception:  # OrderNotFound: the venue never got it
            return False
        self._record(client_order_id, exchange, symbol, order.get("side") or "buy", order)
        return True

    async def open_orders(self) -> list[VenueOrder]:
        out = []
        for venue, client in self.clients.items():
            for o in await client.fetch_open_orders():
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

    async def balances(self) -> list[VenueBalance]:
        out = []
        for venue, client in self.clients.items():
            bal = await client.fetch_balance()
            for asset, total in (bal.get("total") or {}).items():
                free, used = bal.get(asset, {}).get("free") or 0, bal.get(asset, {}).get("used") or 0
                if total:
                    out.append(VenueBalance(venue, "spot", asset, dec(free), dec(used)))
        return out

    async def borrow(self, exchange: str, asset: str, amount: Decimal, wallet: str) -> None:
        client = self.client(exchange)
        if wallet.startswith("isolated:"):
            await client.borrow_isolated_margin(wallet.split(":", 1)[1], asset, float(amount))
        else:
            await client.borrow_cross_margin(asset, float(amount))

    async def repay(self, exchange: str, asset: str, amount: Decimal, wallet: str) -> None:
        client = self.client(exchange)
        if wallet.startswith("isolated:"):
            await client.repay_isolated_margin(wallet.split(":", 1)[1], asset, float(amount))
        else:
            await client.repay_cross_margin(asset, float(amount))

    async def withdraw(self, exchange: str, asset: str, amount: Decimal, address: str, to_venue: str = "") -> str:
        """Withdraw to an allow-listed address only; anything else is refused before ccxt is called."""
        allowed = self.venues[exchange].withdraw_allowlist.get(asset, []) if exchange in self.venues else []
        if address not in allowed:
            raise PermissionError(
                f"withdrawal of {asset} from {exchange} to {address!r} refused: not in "
                f"executor.live_venues.{exchange}.withdraw_allowlist.{asset}"
            )
        result = await self.client(exchange).withdraw(asset, float(amount), address)
        return str(result.get("id"))

    def positions(self) -> list[Position]:
        return []

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


def _now_ns(client: Any) -> int:
    return int(client.milliseconds()) * 1_000_000
