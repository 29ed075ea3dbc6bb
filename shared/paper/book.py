"""The paper exchange's view of one market's visible L2 book."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from shared.schemas import BookUpdate

Level = tuple[float, float]


class SimBook:
    """Price → amount per side. Liquidity our own taker orders consume is removed until the venue
    next reports that level, so two orders never take the same visible volume.

    Unlike ingest's ``OrderBook`` (the venue's book rebuilt from the wire, sequence-checked) and the
    arbitrage engine's ``Book`` (a read-only snapshot), this one is matched against and remembers
    what our own orders took.
    """

    __slots__ = ("_best_ask", "_best_bid", "asks", "bids", "seq")

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.seq = 0
        # The touch, kept as levels change (a full book has thousands of levels; a scan per update is
        # what made tick-to-order slow); None = not known, found again by one scan when asked.
        self._best_bid: float | None = None
        self._best_ask: float | None = None

    def apply(self, update: BookUpdate) -> None:
        if update.snapshot:
            self.bids.clear()
            self.asks.clear()
            self._best_bid = self._best_ask = None
        self._best_bid = _set_levels(self.bids, update.bids, self._best_bid, max)
        self._best_ask = _set_levels(self.asks, update.asks, self._best_ask, min)
        self.seq = update.seq

    def side(self, side: str) -> dict[float, float]:
        """The levels a ``side`` order rests on (bids for buy)."""
        return self.bids if side == "buy" else self.asks

    def best_bid(self) -> float | None:
        if self._best_bid is None and self.bids:
            self._best_bid = max(self.bids)
        return self._best_bid

    def best_ask(self) -> float | None:
        if self._best_ask is None and self.asks:
            self._best_ask = min(self.asks)
        return self._best_ask

    def mid(self) -> Decimal | None:
        bid, ask = self.best_bid(), self.best_ask()
        if bid is None or ask is None:
            return None
        return (Decimal(repr(bid)) + Decimal(repr(ask))) / 2

    def walk(self, side: str, amount: Decimal, limit: Decimal | None) -> list[tuple[Decimal, Decimal]]:
        """Return the (price, amount) a ``side`` taker order would get, best level first, without
        going past ``limit`` or the visible depth. The book is not changed (see ``take``)."""
        levels = self.asks if side == "buy" else self.bids
        prices = sorted(levels) if side == "buy" else sorted(levels, reverse=True)
        out: list[tuple[Decimal, Decimal]] = []
        left = amount
        for p in prices:
            if left <= 0:
                break
            price = Decimal(repr(p))
            if limit is not None and (price > limit if side == "buy" else price < limit):
                break
            qty = min(left, Decimal(repr(levels[p])))
            if qty > 0:
                out.append((price, qty))
                left -= qty
        return out

    def take(self, side: str, fills: Iterable[tuple[Decimal, Decimal]]) -> None:
        """Remove liquidity a ``side`` taker order consumed."""
        levels = self.asks if side == "buy" else self.bids
        for price, qty in fills:
            p = float(price)
            left = levels.get(p, 0.0) - float(qty)
            if left <= 1e-15:
                levels.pop(p, None)
                if p == self._best_bid:
                    self._best_bid = None
                if p == self._best_ask:
                    self._best_ask = None
            else:
                levels[p] = left


def _set_levels(
    side: dict[float, float], levels: list[Level], best: float | None, better: Callable[[float, float], float]
) -> float | None:
    """Apply ``levels`` to ``side``; return its best price (``better`` picks it), None when it must be found again."""
    for price, amount in levels:
        if amount:
            if price not in side and best is not None:
                best = better(best, price)
            side[price] = amount
        elif side.pop(price, None) is not None and price == best:
            best = None
    return best
