"""Opportunities: a confirmed cycle plus its depth-aware size, and the one-shot scan of a snapshot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.executor.arbitrage.books import Book
from services.executor.arbitrage.cycles import SIDE_NAMES, CycleSet, enumerate_cycles
from services.executor.arbitrage.engine import CycleEngine
from services.executor.arbitrage.markets import Market
from services.executor.arbitrage.sizing import Leg, SizedCycle, size_cycle


@dataclass(frozen=True, slots=True)
class Opportunity:
    """A cycle profitable at the top of the book and at a size that can actually be traded."""

    cycle: int
    assets: tuple[str, ...]
    gross_return: float
    net_return: float
    sized: SizedCycle

    @property
    def max_start_amount(self) -> float:
        return self.sized.start_amount

    @property
    def expected_profit(self) -> float:
        return self.sized.profit

    def to_dict(self) -> dict[str, Any]:
        """The `tradewind arb scan --json` shape of one cycle."""
        return {
            "assets": list(self.assets),
            "legs": [
                {"symbol": f.symbol, "side": SIDE_NAMES[f.side], "price": f.price, "amount": f.amount}
                for f in self.sized.fills
            ],
            "gross_return": self.gross_return,
            "net_return": self.net_return,
            "max_start_amount": self.max_start_amount,
            "expected_profit": self.expected_profit,
        }


def size_opportunity(
    cycles: CycleSet, books: Sequence[Book | None], cycle: int, gross: float, net: float
) -> Opportunity | None:
    """Size a confirmed cycle on the given books; None when no tradable size is profitable."""
    legs = []
    for m, side in cycles.legs(cycle):
        book = books[m]
        if book is None:
            return None
        legs.append(Leg(cycles.markets[m], side, book))
    sized = size_cycle(legs)
    if sized is None:
        return None
    return Opportunity(cycle, tuple(cycles.assets(cycle)), gross, net, sized)


def rank(opportunities: list[Opportunity]) -> list[Opportunity]:
    """Best first: highest net return at the top of the book, then highest expected profit."""
    return sorted(opportunities, key=lambda o: (-o.net_return, -o.expected_profit, o.assets))


def scan(
    markets: Sequence[Market],
    books: Mapping[str, Book],
    max_len: int = 4,
    start_assets: Sequence[str] | None = None,
    min_net_return: float = 0.0,
) -> list[Opportunity]:
    """Every profitable, tradable cycle of one snapshot of books, best first."""
    cycles = enumerate_cycles(markets, max_len, start_assets)
    engine = CycleEngine(cycles, min_net_return)
    by_market: list[Book | None] = [books.get(m.symbol) for m in markets]
    for m, book in enumerate(by_market):
        if book is not None:
            engine.load(m, book.best_bid, book.best_ask)
    return scan_engine(engine, by_market)


def scan_engine(engine: CycleEngine, books: Sequence[Book | None]) -> list[Opportunity]:
    """Re-evaluate every cycle of an engine (after `CycleEngine.load`); best first."""
    found = []
    for cycle, gross, net in engine.confirm(engine.resync()):
        opportunity = size_opportunity(engine.cycles, books, cycle, gross, net)
        if opportunity is not None:
            found.append(opportunity)
    return rank(found)
