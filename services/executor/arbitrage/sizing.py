"""Depth-aware size of one cycle: how much of the start asset to send round, and what comes back.

Without lot rules the final amount is a concave, piecewise-linear function of the start amount
(each leg walks its levels from best to worst), so the profit peaks where the product of the legs'
marginal rates falls to 1. `pour` finds that peak and the breakpoints below it; `simulate` then
replays a start amount with the venue's rules (amounts rounded down to the lot step, minimum
amount, minimum notional) and counts what the rounding leaves behind in intermediate assets as lost.
The best rounded breakpoint wins; a cycle with no tradable, profitable size gets no plan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.executor.arbitrage.books import Book
from services.executor.arbitrage.cycles import SELL
from services.executor.arbitrage.markets import Market

# relative slack when comparing floats that should be equal (remaining capacity, step multiples)
EPS = 1e-12


@dataclass(frozen=True, slots=True)
class Leg:
    """One market order of a cycle, in trading order."""

    market: Market
    side: int  # SELL or BUY
    book: Book


@dataclass(frozen=True, slots=True)
class LegFill:
    """What one leg trades at the chosen size: ``amount`` of base, every level down to ``price``."""

    symbol: str
    side: int
    price: float
    amount: float
    spent: float  # input asset given (base for a sell, quote for a buy)
    received: float  # output asset got, after the taker fee


@dataclass(frozen=True, slots=True)
class SizedCycle:
    start_amount: float  # start asset actually spent by the first leg
    final_amount: float  # start asset back after the last leg
    fills: tuple[LegFill, ...]

    @property
    def profit(self) -> float:
        return self.final_amount - self.start_amount


def _segments(leg: Leg) -> list[tuple[float, float]]:
    """The leg as ``(input capacity, output per input)`` per level, fee included."""
    keep = 1.0 - leg.market.taker_fee
    if leg.side == SELL:
        return [(amount, price * keep) for price, amount in leg.book.bids]
    return [(price * amount, keep / price) for price, amount in leg.book.asks]


def pour(legs: Sequence[Leg]) -> list[float]:
    """Start amounts at which some leg moves to its next level, up to the profit peak (ascending).

    Ignores lot rules. Empty when even the first unit loses money.
    """
    segments = [_segments(leg) for leg in legs]
    if any(not s for s in segments):
        return []
    level = [0] * len(legs)
    left = [s[0][0] for s in segments]
    pushed = 0.0
    breakpoints: list[float] = []
    while True:
        # factor[i]: how much of leg i's input one unit of start asset becomes
        factors = []
        factor = 1.0
        for i, s in enumerate(segments):
            factors.append(factor)
            factor *= s[level[i]][1]
        if factor <= 1.0:
            return breakpoints
        step = min(left[i] / factors[i] for i in range(len(legs)))
        pushed += step
        breakpoints.append(pushed)
        exhausted = False
        for i, s in enumerate(segments):
            left[i] -= step * factors[i]
            if left[i] <= EPS * s[level[i]][0]:
                level[i] += 1
                if level[i] == len(s):
                    exhausted = True
                    break
                left[i] = s[level[i]][0]
        if exhausted:
            return breakpoints


def _floor_to_step(amount: float, step: float) -> float:
    if step <= 0:
        return amount
    return math.floor(amount / step * (1 + EPS)) * step


def _fill(leg: Leg, available: float) -> LegFill | None:
    """Trade as much of ``available`` (the leg's input asset) as the rules and the book allow."""
    market = leg.market
    levels = leg.book.bids if leg.side == SELL else leg.book.asks
    if leg.side == SELL:
        depth = sum(a for _, a in levels)
        amount = _floor_to_step(min(available, depth), market.step)
    else:
        amount, cost = 0.0, 0.0
        for price, size in levels:  # most base that `available` quote can buy
            if cost + price * size <= available:
                amount += size
                cost += price * size
            else:
                amount += (available - cost) / price
                break
        amount = _floor_to_step(amount, market.step)
    if amount <= 0 or amount < market.min_amount * (1 - EPS):
        return None
    notional, remaining, worst = 0.0, amount, 0.0
    for price, size in levels:
        take = min(size, remaining)
        notional += take * price
        remaining -= take
        worst = price
        if remaining <= amount * EPS:
            break
    if remaining > amount * 1e-9 or notional < market.min_notional * (1 - EPS):
        return None
    keep = 1.0 - market.taker_fee
    if leg.side == SELL:
        return LegFill(market.symbol, SELL, worst, amount, amount, notional * keep)
    if notional > available * (1 + 1e-9):
        return None
    return LegFill(market.symbol, leg.side, worst, amount, notional, amount * keep)


def simulate(legs: Sequence[Leg], start_amount: float) -> SizedCycle | None:
    """Send ``start_amount`` round the cycle under the venue's rules; None when a leg cannot trade."""
    fills = []
    available = start_amount
    for leg in legs:
        fill = _fill(leg, available)
        if fill is None:
            return None
        fills.append(fill)
        available = fill.received
    return SizedCycle(fills[0].spent, available, tuple(fills))


def _ceil_to_step(amount: float, step: float) -> float:
    if step <= 0:
        return amount
    return math.ceil(amount / step * (1 - EPS)) * step


def _input_for(leg: Leg, output: float) -> float | None:
    """The least input (rounded up to the lot step) that makes the leg deliver ``output``."""
    keep = 1.0 - leg.market.taker_fee
    if leg.side == SELL:
        amount, got = 0.0, 0.0
        for price, size in leg.book.bids:
            if got + price * size * keep >= output:
                amount += (output - got) / (price * keep)
                break
            amount += size
            got += price * size * keep
        else:
            return None
        return _ceil_to_step(amount, leg.market.step)
    amount = _ceil_to_step(output / keep, leg.market.step)
    cost, remaining = 0.0, amount
    for price, size in leg.book.asks:
        take = min(size, remaining)
        cost += take * price
        remaining -= take
        if remaining <= amount * EPS:
            return cost
    return None


def trim(legs: Sequence[Leg], sized: SizedCycle) -> SizedCycle | None:
    """Shrink a plan so that no leg receives more than the next leg can use (lot-step dust).

    Works backwards from what the last leg actually sold, then replays forwards from the
    smaller start amount.
    """
    need = sized.fills[-1].spent
    for leg in reversed(legs[:-1]):
        found = _input_for(leg, need)
        if found is None:
            return None
        need = found
    return simulate(legs, need)


def size_cycle(legs: Sequence[Leg]) -> SizedCycle | None:
    """The most profitable tradable size of a cycle, or None if no size makes a profit."""
    best: SizedCycle | None = None
    for amount in reversed(pour(legs)):
        sized = simulate(legs, amount)
        if sized is None:
            continue
        for plan in (sized, trim(legs, sized)):
            if plan is not None and plan.profit > 0 and (best is None or plan.profit > best.profit):
                best = plan
    return best
