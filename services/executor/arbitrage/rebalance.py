"""Moving inventory between venues: the cheapest way that settles fast enough, and a carry in progress.

A venue short of an asset is topped up from another venue either by transferring the asset itself or
by carrying a fast-settling coin (Nano, XNO, ~1 s, no fee): buy the coin with the asset on the donor,
transfer it, sell it for the asset on arrival. Routes slower than the bound are not considered; among
the others the cheapest expected cost wins (the faster on a tie). Pure: the strategy sends the orders
and the transfer and feeds the reports back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.executor.arbitrage.cross import Top
from services.executor.arbitrage.cross_execution import CrossLeg, take_report
from shared.schemas import OrderEvent, OrderIntent
from shared.sections.executor import TransferRule


@dataclass(frozen=True, slots=True)
class Route:
    asset: str  # what the receiving venue needs
    coin: str  # what travels: ``asset`` itself, or a carry coin bought with it and sold on arrival
    donor: str
    receiver: str
    amount: float  # of ``asset`` taken from the donor
    cost: float  # expected, in ``asset``: the transfer fee, plus both trades' fees and spreads for a carry
    settle_s: float


def cheapest_route(asset: str, donor: str, receiver: str, amount: float, rules: Mapping[str, TransferRule],
                   default: TransferRule, tops: Mapping[tuple[str, str], Top], fees: Mapping[str, float],
                   max_settle_s: float) -> Route | None:  # fmt: skip
    """The cheapest route settling within ``max_settle_s`` (ties: the faster), or None."""
    routes = []
    direct = rules.get(asset, default)
    if direct.settle_s <= max_settle_s:
        routes.append(Route(asset, asset, donor, receiver, amount, direct.fee, direct.settle_s))
    for (venue, symbol), buy in tops.items():
        coin, _, quote = symbol.partition("/")
        sell = tops.get((receiver, symbol))
        rule = rules.get(coin, default)
        if venue != donor or quote != asset or sell is None or rule.settle_s > max_settle_s or buy.ask <= 0:
            continue
        coins = amount / (buy.ask * (1 + fees[donor]))
        back = (coins - rule.fee) * sell.bid * (1 - fees[receiver])
        routes.append(Route(asset, coin, donor, receiver, amount, amount - back, rule.settle_s))
    return min(routes, key=lambda r: (r.cost, r.settle_s), default=None)


@dataclass
class Carry:
    """A carry in progress: ``buying`` on the donor, ``moving`` between venues, ``selling`` on arrival."""

    carry_id: str
    route: Route
    buy: CrossLeg
    sell: CrossLeg | None = None
    state: str = "buying"
    transfer_id: str = ""
    sent: float = 0.0  # coins withdrawn (fee included)
    fee: float = 0.0  # coins the transfer fee took
    arrives_ns: int = 0
    spent: float = field(default=0.0)  # of the asset, on the donor (fees included)
    received: float = 0.0  # of the asset, on the receiver (fees deducted)

    @property
    def symbol(self) -> str:
        return f"{self.route.coin}/{self.route.asset}"

    def owns(self, client_order_id: str) -> bool:
        return client_order_id in (self.buy.client_order_id, self.sell.client_order_id if self.sell else "")

    def intent(self, leg: CrossLeg, now: int, strategy: str) -> OrderIntent:
        return OrderIntent(leg.client_order_id, leg.venue, self.symbol, leg.side, "market", leg.amount, now,  # type: ignore[arg-type]
                           strategy=strategy)  # fmt: skip

    def apply(self, event: OrderEvent) -> None:
        leg = self.buy if event.client_order_id == self.buy.client_order_id else self.sell
        assert leg is not None
        take_report(leg, event)
        if leg is self.buy and leg.final:
            self.spent = leg.cost + leg.fee_quote
            self.state = "bought" if leg.filled - leg.fee_base > 0 else "done"
        elif leg is self.sell and leg.final:
            self.received = leg.cost - leg.fee_quote
            self.state = "done"

    def coins_held(self) -> float:
        """Coins the buy left on the donor (a fee in the coin deducted)."""
        return self.buy.filled - self.buy.fee_base

    @property
    def cost(self) -> float:
        """What the carry cost, in the asset: spent on the donor minus received on the receiver."""
        return self.spent - self.received
