"""One cross-venue execution in flight (buy on one venue, sell on the other, both IOC at once) and the
guards that decide whether to fire one.

Pure: legs are followed from their reports (or from what a lookup found when a report never came),
an unbalanced outcome gets one market order that brings the base asset back to where it started, and
the realised profit is the quote gained plus any base left over at the mid. ``state()`` / ``restore()``
keep an execution across an executor restart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from services.executor.arbitrage.guards import Pacing
from shared.schemas import OrderEvent, OrderIntent

FINAL = ("filled", "cancelled", "rejected")


@dataclass
class CrossLeg:
    client_order_id: str
    venue: str
    side: str
    amount: float
    limit: float | None  # None: a market order (the unwind)
    status: str = "sent"
    filled: float = 0.0
    cost: float = 0.0  # quote paid or received, before fees
    fee_quote: float = 0.0
    fee_base: float = 0.0
    fill_ids: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.status in FINAL


def take_report(leg: CrossLeg, event: OrderEvent) -> None:
    """A report's new fills (each counted once: delivery is at least once) and final status, into its leg."""
    base, _, quote = event.symbol.partition("/")
    for f in event.fills:
        if f.fill_id in leg.fill_ids:
            continue
        leg.fill_ids.append(f.fill_id)
        leg.filled += f.amount
        leg.cost += f.amount * f.price
        if f.fee_asset == quote:
            leg.fee_quote += f.fee
        elif f.fee_asset == base:
            leg.fee_base += f.fee
    if event.status in FINAL:
        leg.status = event.status


@dataclass
class CrossExecution:
    execution_id: str
    symbol: str
    buy_venue: str
    sell_venue: str
    expected_profit: float
    detected_ns: int
    started_ns: int
    legs: list[CrossLeg] = field(default_factory=list)
    status: str = "running"
    failure: str = ""
    finished_ns: int = 0

    @property
    def base(self) -> str:
        return self.symbol.partition("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.partition("/")[2]

    def intents(self, legs: list[CrossLeg], now: int, strategy: str) -> list[OrderIntent]:
        venue_of = {leg.client_order_id: leg.venue for leg in legs}
        return [
            OrderIntent(
                leg.client_order_id,
                venue_of[leg.client_order_id],
                self.symbol,
                leg.side,  # type: ignore[arg-type]
                "ioc" if leg.limit is not None else "market",
                leg.amount,
                now,
                price=leg.limit,
                strategy=strategy,
            )
            for leg in legs
        ]

    def owns(self, client_order_id: str) -> bool:
        return any(leg.client_order_id == client_order_id for leg in self.legs)

    def apply(self, event: OrderEvent) -> None:
        """Take one report of a leg."""
        take_report(next(leg for leg in self.legs if leg.client_order_id == event.client_order_id), event)

    def resolve(self, client_order_id: str, status: str, filled: float, cost: float, fee_quote: float) -> None:
        """What a lookup found for a leg whose report never came (status ``rejected``: never placed)."""
        leg = next(leg for leg in self.legs if leg.client_order_id == client_order_id)
        leg.status, leg.filled, leg.cost, leg.fee_quote = status, filled, cost, fee_quote

    def base_delta(self) -> float:
        """Base bought minus base sold (fees in base included): what an unwind must bring back to 0."""
        bought = sum(leg.filled for leg in self.legs if leg.side == "buy")
        sold = sum(leg.filled for leg in self.legs if leg.side == "sell")
        return bought - sold - sum(leg.fee_base for leg in self.legs)

    def quote_delta(self) -> float:
        received = sum(leg.cost for leg in self.legs if leg.side == "sell")
        paid = sum(leg.cost for leg in self.legs if leg.side == "buy")
        return received - paid - sum(leg.fee_quote for leg in self.legs)

    def next_step(self, unwind_id: str, min_amount: float) -> CrossLeg | None:
        """Once every leg is final: the unwind leg when the base is off by more than dust, else finish."""
        if not all(leg.final for leg in self.legs):
            return None
        delta = self.base_delta()
        unwound = any(leg.limit is None for leg in self.legs)
        if abs(delta) > min_amount and not unwound:
            side = "sell" if delta > 0 else "buy"
            venue = self.buy_venue if delta > 0 else self.sell_venue  # where the extra base lies, or is owed
            self.failure = "one leg filled less than the other"
            leg = CrossLeg(unwind_id, venue, side, abs(delta), None)
            self.legs.append(leg)
            return leg
        self.status = "completed" if not self.failure else ("unwound" if abs(delta) <= min_amount else "unwind_failed")
        if all(leg.filled == 0 for leg in self.legs):
            self.status, self.failure = "missed", self.failure or "neither leg filled"
        return None

    def realized(self, mid: float) -> float:
        return self.quote_delta() + self.base_delta() * mid

    def state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def restore(cls, state: dict[str, Any]) -> CrossExecution:
        legs = [CrossLeg(**leg) for leg in state.pop("legs")]
        return cls(**state, legs=legs)


class CrossGuards(Pacing):
    """Book age, edge after fees and a slippage buffer on both legs, hourly cap and cool-down after failure."""

    def refusal(self, book_ts: tuple[int, int], edge_after_slippage: float, now: int) -> str | None:
        if self.stale(book_ts, now):
            return "stale_book"
        if edge_after_slippage <= 0:
            return "edge_below_slippage"
        return self.paced(now)
