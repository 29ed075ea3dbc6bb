"""Order outcomes through ccxt: classified, never guessed, looked up by client order id until known,
and read off the venue's answers (status, new fills).

Only a definite refusal of the venue (ccxt's InsufficientFunds, BadSymbol, InvalidOrder but not its
DuplicateOrderId / OrderNotFound, AuthenticationError) is a rejection. Anything else while placing
(timeouts, network errors, 5xx, rate limits, the unexpected) makes the outcome ``unknown``: the order
is looked up by its client order id with backoff until the venue says what became of it. "Not found"
means "never placed" only once the venue's receive window has passed since the request was signed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import ccxt

from shared.paper import dec
from shared.schemas import Fill, OrderIntent
from shared.sections.executor import CcxtVenue

log = logging.getLogger(__name__)

STATUS = {"open": "accepted", "closed": "filled", "canceled": "cancelled", "cancelled": "cancelled"}
STATUS |= {"expired": "cancelled", "rejected": "rejected"}  # ccxt's order status -> ours

# (client order id, venue, symbol, side, the ccxt order, margin mode): store what the venue says of an order
Record = Callable[[str, str, str, str, dict[str, Any], str | None], None]
# (intent, status, reason): report an event of an order the venue has not described
Event = Callable[[OrderIntent, str, str], None]


def is_refusal(exc: BaseException) -> bool:
    """Whether the venue definitely did not place the order (else its outcome is unknown).

    AuthenticationError counts: a request whose key or signature the venue refuses is never executed.
    """
    if isinstance(exc, (ccxt.DuplicateOrderId, ccxt.OrderNotFound)):
        return False  # a duplicate id means the venue has an order with it
    return isinstance(exc, (ccxt.InsufficientFunds, ccxt.BadSymbol, ccxt.InvalidOrder, ccxt.AuthenticationError))


def new_fills(order: dict[str, Any], before: Decimal, filled: Decimal, quote: str) -> list[Fill]:
    """The fills of a ccxt order beyond the ``before`` already reported: its trades when they make up the
    whole filled amount, else one fill of the new amount at the price its average and cost imply."""
    fills = []
    trades = order.get("trades") or []
    if sum((dec(t["amount"]) for t in trades), Decimal(0)) == filled:  # the whole history: keep the new ones
        total = Decimal(0)
        for i, t in enumerate(trades):
            total += dec(t["amount"])
            if total <= before:
                continue
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
    elif filled > before:
        new_fill = filled - before
        avg = dec(order.get("average") or order.get("price") or 0)
        cost = dec(order.get("cost") or 0)
        price = (cost - avg * before) / new_fill if cost and before else avg
        ts = int(order.get("lastTradeTimestamp") or order.get("timestamp") or 0) * 1_000_000
        fills.append(Fill(f"{order.get('id')}-{filled}", float(price), float(new_fill), 0.0, quote, ts))
    return fills


@dataclass(slots=True)
class Lookup:
    """An order whose outcome is unknown, looked up by client order id until known."""

    intent: OrderIntent
    sent_ms: int  # when the request was signed (or, for a previous run's order, when we started)
    next_ms: int
    delay_s: float
    misses: int = 0  # "not found" answers so far


class Lookups:
    """The orders of unknown outcome of one gateway, and the questions that settle them."""

    def __init__(
        self,
        venues: dict[str, CcxtVenue],
        client: Callable[[str], Any],
        record: Record,
        event: Event,
        started_ms: int,
    ) -> None:
        self.venues = venues
        self.client = client
        self.record = record
        self.event = event
        self.started_ms = started_ms  # every request of an earlier run was signed before this
        self.pending: dict[str, Lookup] = {}

    def busy_venues(self) -> set[str]:
        return {lk.intent.exchange for lk in self.pending.values()}

    def start(self, intent: OrderIntent, sent_ms: int) -> None:
        """Look ``intent`` up from now on: placing it failed in a way that does not say whether it is live."""
        first = self.venues[intent.exchange].lookup_backoff_s
        self.pending[intent.client_order_id] = Lookup(intent, sent_ms, sent_ms + int(first * 1000), first)

    def track(self, intent: OrderIntent) -> None:
        """Report ``intent`` (sent by an earlier run) as unknown and look it up until the venue says."""
        if intent.client_order_id in self.pending:
            return  # looked up already (a batch handled again): its receive window runs from the first time
        cfg = self.venues[intent.exchange]
        self.event(intent, "unknown", "venue.lookup_failed")
        now = int(time.time() * 1000)
        self.pending[intent.client_order_id] = Lookup(intent, self.started_ms, now, cfg.lookup_backoff_s)

    async def resolve_due(self, now_ms: int) -> None:
        for cid, lookup in list(self.pending.items()):
            if lookup.next_ms <= now_ms:
                await self._look_up(cid, lookup, now_ms)

    async def _look_up(self, cid: str, lookup: Lookup, now_ms: int) -> None:
        i, cfg = lookup.intent, self.venues[lookup.intent.exchange]
        params: dict[str, Any] = {"clientOrderId": cid}
        if i.margin_mode:
            params["marginMode"] = i.margin_mode
        try:
            order = await self.client(i.exchange).fetch_order(None, i.symbol, params)
        except ccxt.OrderNotFound:
            lookup.misses += 1  # several answers, backed off: an accepted order may show up late
            window_over = now_ms >= lookup.sent_ms + cfg.receive_window_ms + cfg.clock_skew_ms
            if window_over and lookup.misses >= cfg.not_found_lookups:
                del self.pending[cid]
                log.warning("%s: %s was never placed (not found after the receive window)", i.exchange, cid)
                self.event(i, "rejected", "venue.not_placed")
                return
        except Exception as exc:
            log.warning("%s: looking up %s failed (%s); trying again", i.exchange, cid, type(exc).__name__)
        else:
            del self.pending[cid]
            self.record(cid, i.exchange, i.symbol, i.side, order, i.margin_mode)
            return
        lookup.next_ms = now_ms + int(lookup.delay_s * 1000)
        lookup.delay_s = min(lookup.delay_s * 2, cfg.lookup_backoff_max_s)

    async def knows(
        self, client_order_id: str, exchange: str, symbol: str, margin_mode: str | None = None
    ) -> bool | None:
        """True when the venue has the order, False when it certainly never will, None when unknown.

        An order sent by an earlier run is certainly absent only once the receive window has passed since
        this gateway started (every request of that run was signed before); until then we wait.
        """
        client, cfg = self.client(exchange), self.venues[exchange]
        delay = cfg.lookup_backoff_s
        params: dict[str, Any] = {"clientOrderId": client_order_id}
        if margin_mode:
            params["marginMode"] = margin_mode
        for _ in range(4):
            try:
                order = await client.fetch_order(None, symbol, params)
            except ccxt.OrderNotFound:
                wait_ms = self.started_ms + cfg.receive_window_ms + cfg.clock_skew_ms - int(time.time() * 1000)
                if wait_ms <= 0:
                    return False
                await asyncio.sleep(wait_ms / 1000)
                continue
            except Exception as exc:
                log.warning("%s: looking up %s failed: %s", exchange, client_order_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, cfg.lookup_backoff_max_s)
                continue
            log.info(
                "%s: %s is at the venue: %s, filled %s",
                exchange,
                client_order_id,
                order.get("status"),
                order.get("filled"),
            )
            self.record(client_order_id, exchange, symbol, order.get("side") or "buy", order, margin_mode)
            return True
        return None
