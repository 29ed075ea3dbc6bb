"""Cross-venue arbitrage: buy where an asset is cheap, sell where it is dear, net of both venues'
fees and of what moving the asset between them costs.

Two ways to take a price gap on ``BASE/QUOTE`` between venue A (ask) and venue B (bid):

- ``inventory``: quote is held on A and base on B, so both legs fire at once and nothing is in
  transit while prices move; the base bought on A is later sent to B to restore the inventory,
  and that rebalancing transfer's fee is charged to the trade.
- ``transfer``: only quote on A. Buy on A, withdraw the base to B, sell it on arrival. The
  position is open for the whole settle time, so besides the transfer fee the edge must cover a
  time-risk charge, ``risk_k * sigma * sqrt(settle_s)`` of the notional (sigma: volatility per √second).
  Only assets that settle within ``max_transfer_s`` qualify: Nano (XNO, ~1 s, no fee) does,
  Bitcoin (~30 min) does not.

Pure code: the caller supplies the books' tops, the balances and the transfer rules (the paper
exchange's, or a live venue's withdrawal terms) and executes the plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from shared.schemas import OrderIntent
from shared.sections.executor import TransferRule


@dataclass(frozen=True, slots=True)
class Top:
    """Best bid and ask of one market on one venue, with the amounts shown there."""

    bid: float
    bid_size: float
    ask: float
    ask_size: float


@dataclass(frozen=True, slots=True)
class CrossOpportunity:
    symbol: str
    buy_venue: str
    sell_venue: str
    buy_price: float
    sell_price: float
    amount: float  # base
    mode: Literal["inventory", "transfer"]
    gross_profit: float  # quote, after both taker fees
    transfer_cost: float  # quote: the withdrawal fee at the sell price
    time_risk: float  # quote: the charge for the time in transit (0 with inventory)
    transit_s: float

    @property
    def expected_profit(self) -> float:
        return self.gross_profit - self.transfer_cost - self.time_risk

    def intents(self, prefix: str, now: int, slippage: float = 0.0) -> list[OrderIntent]:
        """IOC legs: both (inventory), or the buy alone (transfer: sell what arrives)."""
        buy = OrderIntent(
            f"{prefix}-buy",
            self.buy_venue,
            self.symbol,
            "buy",
            "ioc",
            self.amount,
            now,
            price=self.buy_price * (1 + slippage),
            strategy="xarb",
        )
        if self.mode == "transfer":
            return [buy]
        return [buy, self.sell_intent(prefix, self.amount, now, slippage)]

    def sell_intent(self, prefix: str, amount: float, now: int, slippage: float = 0.0) -> OrderIntent:
        return OrderIntent(
            f"{prefix}-sell",
            self.sell_venue,
            self.symbol,
            "sell",
            "ioc",
            amount,
            now,
            price=self.sell_price * (1 - slippage),
            strategy="xarb",
        )


class CrossVenueArbitrage:
    """Find the best buy-here-sell-there trade of one symbol across venues."""

    def __init__(
        self,
        taker_fees: Mapping[str, float],
        transfers: Mapping[str, TransferRule],
        transfer_default: TransferRule | None = None,
        *,
        max_transfer_s: float = 60.0,
        volatility_per_sqrt_s: float = 0.0002,  # ≈ 1.2% per √hour: a calm crypto day
        risk_k: float = 2.0,
        min_profit: float = 0.0,
        max_amount: float | None = None,
        max_amounts: Mapping[str, float] | None = None,
    ) -> None:
        self.taker_fees = taker_fees
        self.transfers = transfers
        self.transfer_default = transfer_default or TransferRule()
        self.max_transfer_s = max_transfer_s
        self.sigma = volatility_per_sqrt_s
        self.risk_k = risk_k
        self.min_profit = min_profit
        self.max_amount = max_amount
        self.max_amounts = max_amounts or {}  # per base asset, the most one trade may buy
        self.tops: dict[tuple[str, str], Top] = {}

    def on_top(self, venue: str, symbol: str, top: Top) -> None:
        self.tops[(venue, symbol)] = top

    def best(self, symbol: str, free: Callable[[str, str], float]) -> CrossOpportunity | None:
        """The most profitable trade now, given ``free(venue, asset)`` balances; None when none pays."""
        base, _, quote = symbol.partition("/")
        rule = self.transfers.get(base, self.transfer_default)
        venues = [v for (v, s) in self.tops if s == symbol]
        best: CrossOpportunity | None = None
        for a in venues:
            for b in venues:
                if a == b:
                    continue
                found = self._evaluate(symbol, base, quote, a, b, rule, free)
                if found is not None and (best is None or found.expected_profit > best.expected_profit):
                    best = found
        return best

    def _evaluate(
        self,
        symbol: str,
        base: str,
        quote: str,
        a: str,
        b: str,
        rule: TransferRule,
        free: Callable[[str, str], float],
    ) -> CrossOpportunity | None:
        buy, sell = self.tops[(a, symbol)], self.tops[(b, symbol)]
        fee_a, fee_b = self.taker_fees[a], self.taker_fees[b]
        unit = sell.bid * (1 - fee_b) - buy.ask * (1 + fee_a)  # quote gained per base unit
        if unit <= 0:
            return None
        depth = min(buy.ask_size, sell.bid_size, free(a, quote) / (buy.ask * (1 + fee_a)))
        if self.max_amount is not None:
            depth = min(depth, self.max_amount)
        depth = min(depth, self.max_amounts.get(base, depth))
        inventory = min(depth, free(b, base))
        if inventory > 0 and inventory >= depth * 0.999:
            mode: Literal["inventory", "transfer"] = "inventory"
            amount, risk, transit = depth, 0.0, rule.settle_s
        elif rule.settle_s <= self.max_transfer_s:
            mode, amount, transit = "transfer", depth, rule.settle_s
            risk = self.risk_k * self.sigma * math.sqrt(rule.settle_s) * amount * sell.bid
        else:
            return None  # no base on the selling venue, and the asset is too slow to carry there
        found = CrossOpportunity(
            symbol,
            a,
            b,
            buy.ask,
            sell.bid,
            amount,
            mode,
            gross_profit=unit * amount,
            transfer_cost=rule.fee * sell.bid,
            time_risk=risk,
            transit_s=transit,
        )
        return found if found.expected_profit > self.min_profit else None
