"""Lot rules: the amounts a venue accepts for one market (lot step, minimum quantity and notional).

The portfolio env and the executor size orders with the same rules, so a policy never learns from a
trade its venue would reject: a wanted change of holdings becomes an order rounded towards zero to the
lot step, and no order at all below the minimum quantity or notional. The rules mirror the paper
exchange's ``shared.paper.rules.SymbolRules`` (Binance's LOT_SIZE / MIN_NOTIONAL filters): an amount
is valid when it is at least ``min_qty`` and ``(amount - min_qty)`` is a whole number of steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from shared.paper.rules import SymbolRules
from shared.schemas.messages import MarginMode, Side

EPS = 1e-9  # relative slack for float steps (0.1 + 0.2 is a whole number of 0.1 steps)


@dataclass(frozen=True)
class LotRule:
    """One market's lot rules; zero means "no such rule"."""

    step: float = 0.0
    min_qty: float = 0.0
    min_notional: float = 0.0

    def __post_init__(self) -> None:
        if min(self.step, self.min_qty, self.min_notional) < 0 or not all(
            math.isfinite(x) for x in (self.step, self.min_qty, self.min_notional)
        ):
            raise ValueError(f"LotRule: expected finite non-negative step/min_qty/min_notional, found {self}")

    @property
    def decimals(self) -> int:
        """Decimal places of the step (and minimum quantity): amounts are rounded to them, not to float noise."""
        places = [
            -int(Decimal(repr(float(x))).normalize().as_tuple().exponent) for x in (self.step, self.min_qty) if x > 0
        ]
        return max([0, *places])

    def round_down(self, amount: float) -> float:
        """The largest valid quantity not above `amount` (>= 0); 0 when below the minimum quantity."""
        if amount <= 0 or amount < self.min_qty * (1 - EPS):
            return 0.0
        if self.step <= 0:
            return amount
        steps = math.floor((amount - self.min_qty) / self.step + EPS)
        return round(self.min_qty + max(steps, 0) * self.step, self.decimals)

    def order(self, delta: float, price: float) -> float:
        """The signed base amount to trade for a wanted change `delta` at `price`: rounded towards zero to
        the step, 0 when below the minimum quantity or notional."""
        size = self.round_down(abs(delta))
        if size <= 0 or size * price < self.min_notional * (1 - EPS):
            return 0.0
        return math.copysign(size, delta)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LotRule:
        unknown = set(raw) - {"step", "min_qty", "min_notional"}
        if unknown:
            raise ValueError(f"LotRule: unknown keys {sorted(unknown)}; expected step, min_qty, min_notional")
        return cls(**{k: float(v) for k, v in raw.items()})

    @classmethod
    def from_symbol_rules(cls, rules: SymbolRules) -> LotRule:
        """The lot part of a market's venue filters (as the paper exchange enforces them)."""
        return cls(float(rules.step_size), float(rules.min_qty), float(rules.min_notional))


NO_LOTS = LotRule()


FUNDING_MARGIN = 1.01  # a buy needs its notional free plus room for the fee (the guard's fee buffer)
Leg = tuple[Side, float, MarginMode | None]  # side, base amount, None for spot or the margin mode


def order_legs(delta: float, position: float, price: float, free_quote: float | None, lot: LotRule) -> list[Leg]:
    """A change of ``delta`` base as market order legs: a buy covers a short (cross margin) before it buys
    spot, as far as ``free_quote`` pays for (None: unchecked); a sell sells spot held before it shorts on
    cross margin. The change and each leg are rounded towards zero to the lot step (6 significant digits
    without one); legs that round to nothing are left out. The executor's RL strategy and `tradewind risk
    simulate` size orders with this one rule."""
    delta = lot.order(delta, price)
    legs: list[Leg] = []
    if delta > 0:
        cover = min(delta, max(-position, 0.0))
        buy = delta - cover
        if free_quote is not None:
            buy = min(buy, free_quote / (price * FUNDING_MARGIN))
        legs += [("buy", cover, "cross"), ("buy", buy, None)]
    elif delta < 0:
        spot = min(-delta, max(position, 0.0))
        legs += [("sell", spot, None), ("sell", -delta - spot, "cross")]
    out: list[Leg] = []
    for side, wanted, margin in legs:
        amount = lot.order(wanted, price)
        if not lot.step:
            amount = float(f"{amount:.6g}")  # no lot step: a readable amount
        if amount > 0:
            out.append((side, amount, margin))
    return out
