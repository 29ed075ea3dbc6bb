"""Execution guards and order plans for a detected cycle: decide whether to fire, what IOC legs
to send, and how to get back to the start asset when a leg fails.

Pure (no gateway, no clock of its own): the executor feeds it times and outcomes, so every
decision is reproducible in tests. It never sizes above the depth-aware plan or the configured cap.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from services.executor.arbitrage.books import Book
from services.executor.arbitrage.cycles import SELL
from services.executor.arbitrage.markets import Market
from services.executor.arbitrage.scan import Opportunity
from shared.sections.arbitrage import ArbitrageSettings

HOUR_NS = 3_600_000_000_000


@dataclass(frozen=True, slots=True)
class LegOrder:
    """One order: ``amount`` of base; an IOC no worse than ``limit_price``, or a market order."""

    symbol: str
    side: str  # "buy" | "sell"
    amount: float
    limit_price: float  # 0 for market orders
    order_type: str = "ioc"  # "ioc" | "market"


class Pacing:
    """What every arbitrage strategy's guards share: book age, the hourly cap and the cool-down after a failure."""

    def __init__(self, settings: ArbitrageSettings) -> None:
        self.settings = settings
        self._started: deque[int] = deque()
        self._cooldown_until = 0

    def stale(self, book_ts: Sequence[int], now: int) -> bool:
        """Is any leg's book (its time, ns) older than ``book_max_age_ms``?"""
        max_age_ns = self.settings.book_max_age_ms * 1e6
        return any(now - ts > max_age_ns for ts in book_ts)

    def paced(self, now: int) -> str | None:
        """``cooldown`` or ``hourly_cap`` when one holds now, else None."""
        if now < self._cooldown_until:
            return "cooldown"
        while self._started and now - self._started[0] >= HOUR_NS:
            self._started.popleft()
        if len(self._started) >= self.settings.max_executions_per_hour:
            return "hourly_cap"
        return None

    def started(self, now: int) -> None:
        """Count an execution against the hourly cap."""
        self._started.append(now)

    def failed(self, now: int) -> None:
        """Start the cool-down after a failed execution."""
        self._cooldown_until = now + int(self.settings.cooldown_s * 1e9)


class ExecutionGuards(Pacing):
    """Book age, edge after fees and slippage, size cap, hourly cap and cool-down after failure."""

    def __init__(self, settings: ArbitrageSettings) -> None:
        super().__init__(settings)
        self._slippage = settings.slippage_bps / 10_000

    def refusal(self, opportunity: Opportunity, book_ts: Sequence[int], now: int) -> str | None:
        """Why this opportunity must not be traded now (None: fire). ``book_ts``: each leg's book time, ns."""
        if self.stale(book_ts, now):
            return "stale_book"
        legs = len(opportunity.sized.fills)
        # the edge must survive every leg filling `slippage` worse than the plan
        if (1 + opportunity.net_return) * (1 - self._slippage) ** legs - 1 <= self.settings.min_net_return:
            return "edge_below_slippage"
        return self.paced(now)


def _floor(amount: float, step: float) -> float:
    return math.floor(amount / step * (1 + 1e-12)) * step if step > 0 else amount


def leg_orders(
    opportunity: Opportunity, markets: dict[str, Market], settings: ArbitrageSettings, available: float | None = None
) -> list[LegOrder]:
    """IOC orders for the planned size, scaled down to the start asset's cap (and to ``available``,
    the start asset on hand), limits widened by slippage and kept on the tick, never beyond it.

    Scaling keeps every amount on its lot step (rounded down), so a capped plan never asks for
    more than the plan it came from.
    """
    slippage = settings.slippage_bps / 10_000
    caps = [c for c in (settings.max_start_amount.get(opportunity.assets[0]), available) if c is not None]
    cap = min(caps) if caps else None
    scale = min(1.0, cap / opportunity.max_start_amount) if cap is not None else 1.0
    orders = []
    for fill in opportunity.sized.fills:
        market = markets[fill.symbol]
        selling = fill.side == SELL
        limit = fill.price * (1 - slippage) if selling else fill.price * (1 + slippage)
        if market.tick > 0:  # round towards the plan's price, so the limit stays within the buffer
            ticks = limit / market.tick
            limit = (math.ceil(ticks - 1e-9) if selling else math.floor(ticks + 1e-9)) * market.tick
        orders.append(
            LegOrder(fill.symbol, "sell" if selling else "buy", _floor(fill.amount * scale, market.step), limit)
        )
    return orders


def unwind_orders(
    held_asset: str, amount: float, start_asset: str, markets: Sequence[Market], books: dict[str, Book]
) -> list[LegOrder]:
    """Market orders that turn ``amount`` of ``held_asset`` back into the start asset after a failed leg.

    Uses the direct market between the two assets when there is one, otherwise a path through one
    asset with a market to both. Buy amounts (in base) are estimated from the current best ask; the
    executor should re-size the second order from the first one's actual fill. Empty when nothing is held.
    """
    if held_asset == start_asset or amount <= 0:
        return []
    direct = _between(held_asset, start_asset, markets)
    if direct is not None:
        return [_convert(direct, held_asset, amount, books)]
    for market in markets:
        if held_asset not in (market.base, market.quote):
            continue
        via = market.quote if market.base == held_asset else market.base
        onward = _between(via, start_asset, markets)
        if onward is not None:
            first = _convert(market, held_asset, amount, books)
            book = books[market.symbol]
            got = first.amount * book.best_bid if first.side == "sell" else first.amount
            return [first, _convert(onward, via, got * (1 - market.taker_fee), books)]
    raise ValueError(f"no market path of 1-2 legs from {held_asset} back to {start_asset}")


def _between(a: str, b: str, markets: Sequence[Market]) -> Market | None:
    return next((m for m in markets if {m.base, m.quote} == {a, b}), None)


def _convert(market: Market, held: str, amount: float, books: dict[str, Book]) -> LegOrder:
    """Sell all of a held base, or buy as much base as a held quote pays for at the best ask."""
    if market.base == held:
        return LegOrder(market.symbol, "sell", _floor(amount, market.step), 0.0, "market")
    ask = books[market.symbol].best_ask
    if ask <= 0:
        raise ValueError(f"cannot unwind {held} through {market.symbol}: its book has no asks")
    return LegOrder(market.symbol, "buy", _floor(amount / ask, market.step), 0.0, "market")
