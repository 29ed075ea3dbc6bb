"""Trading costs: exchange fee tiers, half the bid-ask spread, and market impact.

A small pure module (numpy only) so the training env, the backtester and the paper exchange
charge the same costs for the same trade. All costs are fractions of the traded notional.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class FeeTier:
    """Fees that apply from `min_volume_30d` (quote currency traded over 30 days) upwards."""

    min_volume_30d: float
    maker: float
    taker: float


DEFAULT_TIERS = (
    FeeTier(0.0, 0.0010, 0.0010),
    FeeTier(1_000_000.0, 0.0009, 0.0010),
    FeeTier(5_000_000.0, 0.0008, 0.0010),
    FeeTier(20_000_000.0, 0.0007, 0.0009),
)


@dataclass(frozen=True)
class CostModel:
    """Cost of a market (taker) order: fee + half-spread + linear depth impact.

    `impact` is the price move per unit of traded notional relative to the notional the market
    trades in one bar (a proxy for visible depth): trading the whole bar's volume at once costs
    `impact` on top of the fee and the spread.
    """

    tiers: tuple[FeeTier, ...] = DEFAULT_TIERS
    volume_30d: float = 0.0
    half_spread: float = 0.0001  # used when a bar carries no quoted spread
    impact: float = 0.1
    max_impact: float = 0.005  # bar volume is a crude depth proxy: thin bars must not price a trade absurdly

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError("CostModel.tiers: expected at least one fee tier, found none")
        bounds = [t.min_volume_30d for t in self.tiers]
        if bounds != sorted(bounds) or bounds[0] != 0.0:
            raise ValueError(f"CostModel.tiers: expected ascending min_volume_30d from 0, found {bounds}")

    @property
    def taker_fee(self) -> float:
        """The taker fee of the tier that `volume_30d` falls into."""
        fee = self.tiers[0].taker
        for tier in self.tiers:
            if self.volume_30d >= tier.min_volume_30d:
                fee = tier.taker
        return fee

    def cost_rate(
        self,
        trade_notional: ArrayLike,
        bar_notional: ArrayLike | None = None,
        half_spread: ArrayLike | None = None,
    ) -> NDArray[np.float64]:
        """Cost per unit of traded notional for trades of `trade_notional` (absolute, quote)."""
        q = np.abs(np.asarray(trade_notional, dtype=np.float64))
        spread = self.half_spread if half_spread is None else np.asarray(half_spread, dtype=np.float64)
        rate = self.taker_fee + spread + np.zeros_like(q)
        if bar_notional is not None and self.impact > 0.0:
            depth = np.asarray(bar_notional, dtype=np.float64)
            # a bar with no recorded volume (mark-price candles) gives no depth estimate: no impact
            impact = np.minimum(self.impact * q / np.where(depth > 0.0, depth, 1.0), self.max_impact)
            rate = rate + np.where(depth > 0.0, impact, 0.0)
        return rate

    def cost_one(
        self, trade_notional: float, bar_notional: float | None = None, half_spread: float | None = None
    ) -> float:
        """`cost` for one trade, in plain floats (the single env's hot path)."""
        q = abs(trade_notional)
        rate = self.taker_fee + (self.half_spread if half_spread is None else half_spread)
        if bar_notional is not None and bar_notional > 0.0 and self.impact > 0.0:
            rate += min(self.impact * q / bar_notional, self.max_impact)
        return q * rate

    def cost(
        self,
        trade_notional: ArrayLike,
        bar_notional: ArrayLike | None = None,
        half_spread: ArrayLike | None = None,
    ) -> NDArray[np.float64]:
        """Total cost in quote currency of trades of `trade_notional` (absolute, quote)."""
        q = np.abs(np.asarray(trade_notional, dtype=np.float64))
        return q * self.cost_rate(q, bar_notional, half_spread)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tiers": [[t.min_volume_30d, t.maker, t.taker] for t in self.tiers],
            "volume_30d": self.volume_30d,
            "half_spread": self.half_spread,
            "impact": self.impact,
            "max_impact": self.max_impact,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CostModel:
        tiers = tuple(FeeTier(*map(float, t)) for t in raw["tiers"]) if "tiers" in raw else DEFAULT_TIERS
        numbers = {k: float(v) for k, v in raw.items() if k != "tiers"}
        return cls(tiers=tiers, **numbers)
