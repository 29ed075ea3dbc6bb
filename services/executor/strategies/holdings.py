"""What a strategy holds per venue and market, from the fills its orders got, never from what it asked for.

An intent is only a request: the guard or the venue may reject it, a market order may fill in part.
So an order counts in two places: its fills in ``held`` (from ``orders:events``, the cumulative
``filled`` of each report, so a report delivered twice or late adds nothing), and what it may still
fill in ``in_flight`` until its report is final. A strategy sizes its next order against
``position`` (held + in flight): it never sends twice for one target, and a rejected or cancelled
order stops counting the moment its report arrives. A fee the venue takes in the base asset (Binance
spot charges a buy's fee in what was bought) is not held either: each such fill's fee is taken off
once, by fill id, so a spot sell never asks for more than the wallet got.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from services.executor.gateway import StoredOrder
from shared.schemas import OrderEvent, OrderIntent

Market = tuple[str, str]  # (exchange, symbol)
FINAL = frozenset({"filled", "rejected", "cancelled"})


@dataclass(slots=True)
class _Order:
    market: Market
    sign: float  # +1 buy, -1 sell
    amount: float
    filled: float = 0.0
    fees_taken: set[str] = field(default_factory=set)  # fill ids whose base-asset fee is off ``held``


class Holdings:
    """Base amounts held per market (< 0: short) from fills, plus what open orders may still fill."""

    def __init__(self) -> None:
        self.held: dict[Market, float] = {}
        self._open: dict[str, _Order] = {}  # client order id -> an order whose report is not final yet

    def restore(
        self,
        held: Mapping[Market, float],
        open_orders: Iterable[StoredOrder] = (),
        fees_taken: Mapping[str, set[str]] | None = None,
    ) -> None:
        """Start from the stored fills (``held``, every order's, net of base-asset fees) and the orders
        still open then: their later reports add only what they fill beyond what was stored, and take
        off only the fees of fills not in ``fees_taken`` (client order id → fill ids already off)."""
        self.held.update(held)
        for order in open_orders:
            i = order.intent
            self._open[i.client_order_id] = _Order(
                (i.exchange, i.symbol),
                1.0 if i.side == "buy" else -1.0,
                i.amount,
                float(order.filled),
                set((fees_taken or {}).get(i.client_order_id, ())),
            )

    def sent(self, intent: OrderIntent) -> None:
        """Count an order sent by this strategy as in flight until its reports say what it filled."""
        sign = 1.0 if intent.side == "buy" else -1.0
        self._open[intent.client_order_id] = _Order((intent.exchange, intent.symbol), sign, intent.amount)

    def on_event(self, event: OrderEvent) -> bool:
        """Fold one report in; False when it is not about one of this strategy's open orders."""
        order = self._open.get(event.client_order_id)
        if order is None:
            return False
        filled = min(max(event.filled, order.filled), order.amount)  # cumulative: a stale report adds nothing
        if filled > order.filled:
            self.held[order.market] = self.held.get(order.market, 0.0) + order.sign * (filled - order.filled)
            order.filled = filled
        base = order.market[1].split("/")[0]
        for fill in event.fills:
            if fill.fee and fill.fee_asset == base and fill.fill_id not in order.fees_taken:
                order.fees_taken.add(fill.fill_id)
                self.held[order.market] = self.held.get(order.market, 0.0) - fill.fee
        if event.status in FINAL:
            del self._open[event.client_order_id]
        return True

    def busy(self, market: Market) -> bool:
        """Whether an order of this strategy on the market has no final report yet."""
        return any(o.market == market for o in self._open.values())

    def in_flight(self, market: Market) -> float:
        """Signed base amount open orders on this market may still fill."""
        return sum(o.sign * (o.amount - o.filled) for o in self._open.values() if o.market == market)

    def position(self, market: Market) -> float:
        """Held plus in flight: what the market's position will be once every open order fills."""
        return self.held.get(market, 0.0) + self.in_flight(market)
