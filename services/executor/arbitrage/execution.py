"""One cycle execution: its IOC legs, what they actually filled, and the unwind after a failure.

Pure state machine (no I/O, no clock of its own): ``start`` gives the first intents, ``on_event``
takes each order report and gives the next ones. Sequential executions size every next leg from
what the previous one actually delivered; all-at-once executions (inventory in every asset of the
cycle) send every leg together. A leg that is rejected, cancelled unfilled or only partly filled
turns the execution into an unwind: every asset it left with more than dust goes back to the
start asset through market orders, one at a time, each sized from the previous one's fills.

Accounting follows the fills exactly as the venue books them (amount, price, fee and fee asset),
so ``deltas`` equals the ledger's change per asset for this execution's orders.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from services.executor.arbitrage.books import Book
from services.executor.arbitrage.guards import LegOrder, unwind_orders
from services.executor.arbitrage.markets import Market
from shared.schemas import OrderEvent, OrderIntent

TERMINAL = frozenset({"filled", "cancelled", "rejected"})
ExecutionStatus = Literal["running", "completed", "unwinding", "unwound", "unwind_failed"]
# share of the planned amount a leg may miss and still count as filled (float rounding of fills)
FILL_TOLERANCE = 1e-9
VENUE_QUANTUM = 1e-8  # amounts are booked to 8 decimals where a market has no lot step


@dataclass(slots=True)
class SentOrder:
    """An order this execution sent and what came of it."""

    client_order_id: str
    role: Literal["leg", "unwind"]
    order: LegOrder
    status: str = "sent"
    filled: float = 0.0
    avg_price: float = 0.0
    reason: str = ""
    got: float = 0.0  # output asset received, net of a fee charged in it

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def to_dict(self) -> dict[str, object]:
        o = self.order
        return {
            "client_order_id": self.client_order_id,
            "role": self.role,
            "symbol": o.symbol,
            "side": o.side,
            "type": o.order_type,
            "amount": o.amount,
            "limit": o.limit_price or None,
            "status": self.status,
            "filled": self.filled,
            "avg_price": self.avg_price,
            "reason": self.reason,
        }


@dataclass
class CycleExecution:
    """Drive one detected cycle from its first leg to completion or a full unwind."""

    execution_id: str
    venue: str
    assets: tuple[str, ...]
    plan: Sequence[LegOrder]  # capped IOC legs, in trading order
    markets: Mapping[str, Market]
    all_at_once: bool
    fee_in_quote: bool  # the venue charges buy fees in quote on top of the notional (Coinbase, Kraken...)
    detected_ns: int  # receive time of the book update that revealed the cycle
    net_return: float
    expected_profit: float
    start_amount: float
    strategy: str = "arb"
    max_unwind_orders: int = 8
    status: ExecutionStatus = "running"
    orders: list[SentOrder] = field(default_factory=list)
    deltas: dict[str, float] = field(default_factory=dict)
    started_ns: int = 0
    finished_ns: int = 0
    failure: str = ""

    @property
    def start_asset(self) -> str:
        return self.assets[0]

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "unwound", "unwind_failed")

    @property
    def failed(self) -> bool:
        return self.status in ("unwound", "unwind_failed")

    # ---- sending -------------------------------------------------------------------------

    def start(self, now: int) -> list[OrderIntent]:
        """The first intents: every leg at once, or the first leg."""
        self.started_ns = now
        legs = self.plan if self.all_at_once else self.plan[:1]
        return [self._send(leg, "leg", now) for leg in legs]

    def _send(self, leg: LegOrder, role: Literal["leg", "unwind"], now: int) -> OrderIntent:
        cid = f"{self.execution_id}-{len(self.orders) + 1}"
        self.orders.append(SentOrder(cid, role, leg))
        return OrderIntent(
            cid,
            self.venue,
            leg.symbol,
            leg.side,  # type: ignore[arg-type]
            leg.order_type,  # type: ignore[arg-type]
            leg.amount,
            now,
            price=leg.limit_price if leg.order_type != "market" else None,
            strategy=self.strategy,
        )

    # ---- reports -------------------------------------------------------------------------

    def owns(self, client_order_id: str) -> bool:
        return client_order_id.startswith(f"{self.execution_id}-")

    def on_event(self, event: OrderEvent, books: Mapping[str, Book], now: int) -> list[OrderIntent]:
        """Account one report of one of our orders; return the intents it calls for."""
        sent = next((o for o in self.orders if o.client_order_id == event.client_order_id), None)
        if sent is None or sent.done or self.finished:
            return []
        self._account(sent, event)
        if event.status not in TERMINAL:
            return []
        sent.status, sent.filled, sent.avg_price, sent.reason = (
            event.status,
            event.filled,
            event.avg_price,
            event.reason,
        )
        if self.status == "unwinding":
            return self._unwind(books, now)
        leg = sum(1 for o in self.orders if o.role == "leg") - 1
        if sent.filled < sent.order.amount * (1 - FILL_TOLERANCE):
            self.failure = self.failure or f"leg {self.orders.index(sent) + 1} {sent.order.symbol} {event.status}" + (
                f" ({event.reason})" if event.reason else f" ({sent.filled:g} of {sent.order.amount:g})"
            )
            return self._begin_unwind(books, now)
        if self.all_at_once:
            if all(o.done for o in self.orders):
                return self._begin_unwind(books, now) if self.failure else self._complete(now)
            return []
        if leg + 1 == len(self.plan):
            return self._complete(now)
        nxt = self._size_next(self.plan[leg + 1], sent.got)
        if nxt is None:
            self.failure = f"leg {leg + 2} {self.plan[leg + 1].symbol}: {sent.got:g} received is below one lot"
            return self._begin_unwind(books, now)
        return [self._send(nxt, "leg", now)]

    def _account(self, sent: SentOrder, event: OrderEvent) -> None:
        market = self.markets[sent.order.symbol]
        buying = sent.order.side == "buy"
        for f in event.fills:
            notional = f.price * f.amount
            self._add(market.base, f.amount if buying else -f.amount)
            self._add(market.quote, -notional if buying else notional)
            self._add(f.fee_asset, -f.fee)
            got = f.amount if buying else notional
            if f.fee_asset == (market.base if buying else market.quote):
                got -= f.fee
            sent.got += got

    def _add(self, asset: str, delta: float) -> None:
        self.deltas[asset] = self.deltas.get(asset, 0.0) + delta

    def _size_next(self, planned: LegOrder, available: float) -> LegOrder | None:
        """The next leg for what the previous one delivered (never more than the plan's limit allows)."""
        market = self.markets[planned.symbol]
        step = market.step or VENUE_QUANTUM
        if planned.side == "sell":
            amount = _floor(available, step)
        else:
            fee = market.taker_fee if self.fee_in_quote else 0.0
            amount = _floor(available / (planned.limit_price * (1 + fee)), step)
        if amount <= 0 or amount < market.min_amount:
            return None
        return replace(planned, amount=amount)

    def _complete(self, now: int) -> list[OrderIntent]:
        self.status, self.finished_ns = "completed", now
        return []

    # ---- unwinding -----------------------------------------------------------------------

    def _begin_unwind(self, books: Mapping[str, Book], now: int) -> list[OrderIntent]:
        if any(not o.done for o in self.orders):
            return []  # all-at-once: wait for the other legs' reports before deciding what to unwind
        self.status = "unwinding"
        return self._unwind(books, now)

    def _unwind(self, books: Mapping[str, Book], now: int) -> list[OrderIntent]:
        if any(not o.done for o in self.orders):
            return []
        for asset, amount in sorted(self.deltas.items(), key=lambda kv: -kv[1]):
            if asset == self.start_asset or amount <= 0:
                continue
            order = self._unwind_order(asset, amount, books)
            if order is None:
                continue  # dust: below one lot or the minimum notional
            if sum(1 for o in self.orders if o.role == "unwind") >= self.max_unwind_orders:
                break
            return [self._send(order, "unwind", now)]
        self.status = "unwind_failed" if self.leftovers(books) else "unwound"
        self.finished_ns = now
        return []

    def _unwind_order(self, asset: str, amount: float, books: Mapping[str, Book]) -> LegOrder | None:
        try:
            orders = unwind_orders(asset, amount, self.start_asset, list(self.markets.values()), dict(books))
        except (ValueError, KeyError):
            return None
        if not orders:
            return None
        first = orders[0]
        market = self.markets[first.symbol]
        if first.side == "buy":
            # a market buy walks past the best ask and may pay its fee in quote: keep a margin
            book = books[first.symbol]
            worst = _walk_price(book.asks, first.amount) or book.best_ask
            fee = market.taker_fee if self.fee_in_quote else 0.0
            first = replace(first, amount=_floor(amount / (worst * (1 + fee)) * (1 - 1e-6), market.step))
        price = books[first.symbol].best_bid if first.side == "sell" else books[first.symbol].best_ask
        if first.amount <= 0 or first.amount < market.min_amount or first.amount * price < market.min_notional:
            return None
        return first

    def leftovers(self, books: Mapping[str, Book]) -> dict[str, float]:
        """Non-start assets still held above dust: what an unwind could not bring back."""
        return {
            a: x
            for a, x in self.deltas.items()
            if a != self.start_asset and x > 0 and self._unwind_order(a, x, books) is not None
        }

    # ---- results -------------------------------------------------------------------------

    def realized_profit(self, value: Callable[[str, str], float | None]) -> float:
        """The start asset gained, counting what else the execution left behind at ``value`` (mid) prices."""
        total = self.deltas.get(self.start_asset, 0.0)
        for asset, amount in self.deltas.items():
            if asset != self.start_asset and amount:
                price = value(asset, self.start_asset)
                total += amount * price if price is not None else 0.0
        return total

    def residuals(self) -> dict[str, float]:
        """What the execution changed in assets other than the start asset (dust, or what it failed to unwind)."""
        return {a: x for a, x in self.deltas.items() if a != self.start_asset and abs(x) > 1e-12}


def _floor(amount: float, step: float) -> float:
    if step <= 0:
        return amount
    return math.floor(amount / step * (1 + 1e-12)) * step


def _walk_price(levels: Sequence[tuple[float, float]], amount: float) -> float:
    """Worst price a taker order of ``amount`` reaches on these levels (0 when they run out)."""
    left = amount
    for price, size in levels:
        left -= size
        if left <= 0:
            return price
    return 0.0
