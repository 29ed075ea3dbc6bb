"""Bars: the time-ordered OHLCV arrays every policy is trained on and fed live."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Bars:
    """OHLCV bars in time order; optional microstructure columns are None when the source lacks them.

    `half_spread` is a fraction of price, `imbalance` the buy-minus-sell share of traded volume
    (or book imbalance) in [-1, 1], `cross_spread` the relative price gap to another venue.
    """

    ts: NDArray[np.int64]  # bar open time, ns UTC
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.float64]  # base currency
    half_spread: NDArray[np.float64] | None = None
    imbalance: NDArray[np.float64] | None = None
    cross_spread: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def bar_seconds(self) -> float:
        """The typical bar length (median gap), used to annualise returns."""
        if len(self.ts) < 2:
            return 60.0
        return float(np.median(np.diff(self.ts))) / NS_PER_S

    @property
    def notional(self) -> NDArray[np.float64]:
        return self.close * self.volume

    def slice(self, start: int, stop: int) -> Bars:
        """Bars [start, stop) by position."""
        sliced: dict[str, Any] = {}
        for f in fields(self):
            column = getattr(self, f.name)
            sliced[f.name] = None if column is None else column[start:stop]
        return Bars(**sliced)
