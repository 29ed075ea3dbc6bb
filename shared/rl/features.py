"""Observation features from bars, normalised without look-ahead.

Every feature at bar t is a function of bars 0..t only: returns look back, and normalisation
uses exponentially weighted mean/std that include bar t but nothing after it. So the same
function serves training, backtests and live inference, with no fitted scaler to ship.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from shared.rl.bars import NS_PER_S, Bars

RETURN_HORIZONS = (1, 4, 16, 64)
VOL_WINDOW = 32
NORM_HALFLIFE = 2_000  # bars; long enough to be stable, short enough to follow regimes
CLIP = 5.0
WARMUP = max(RETURN_HORIZONS) + VOL_WINDOW  # bars before features are meaningful


@dataclass(frozen=True)
class MarketData:
    """What the env and the backtester read: features plus the prices and liquidity to trade at."""

    names: tuple[str, ...]
    features: NDArray[np.float32]  # (n_bars, n_features)
    close: NDArray[np.float64]
    bar_notional: NDArray[np.float64]  # traded notional per bar, the depth proxy for impact
    half_spread: NDArray[np.float64] | None
    ts: NDArray[np.int64]
    bar_seconds: float

    def __len__(self) -> int:
        return len(self.close)

    @property
    def last_return(self) -> NDArray[np.float64]:
        """close[t] / close[t-1] - 1, zero at t=0 (what a holder earned over the bar just closed)."""
        r = np.zeros(len(self.close))
        r[1:] = self.close[1:] / self.close[:-1] - 1.0
        return r


def _normalise(x: NDArray[np.float64]) -> NDArray[np.float64]:
    s = pd.Series(x)
    ew = s.ewm(halflife=NORM_HALFLIFE, min_periods=VOL_WINDOW)
    z = (s - ew.mean()) / (ew.std() + 1e-12)
    return np.clip(z.fillna(0.0).to_numpy(), -CLIP, CLIP)


TIME_FEATURES = ("day", "week", "none")


def compute_features(bars: Bars, time_features: str = "day") -> MarketData:
    """Compute the causal, normalised feature matrix for `bars`.

    `time_features`: "day" adds the time of day, "week" also the day of week, "none" neither.
    On short histories they act as a bar identifier that a Q-network memorises, so they are
    configurable (synthetic markets have no calendar at all).
    """
    if time_features not in TIME_FEATURES:
        raise ValueError(f"features.time: expected one of {TIME_FEATURES}, found {time_features!r}")
    close = bars.close
    log_close = np.log(close)
    columns: dict[str, NDArray[np.float64]] = {}
    for h in RETURN_HORIZONS:
        r = np.zeros(len(close))
        r[h:] = log_close[h:] - log_close[:-h]
        columns[f"ret_{h}"] = _normalise(r)
    r1 = np.zeros(len(close))
    r1[1:] = np.diff(log_close)
    vol = pd.Series(r1).rolling(VOL_WINDOW, min_periods=2).std().fillna(0.0).to_numpy()
    columns["volatility"] = _normalise(vol)
    columns["range"] = _normalise(
        np.log(np.maximum(bars.high, close) / np.maximum(np.minimum(bars.low, close), 1e-300))
    )
    columns["volume"] = _normalise(np.log1p(bars.volume))
    for name in ("half_spread", "imbalance", "cross_spread"):
        extra = getattr(bars, name)
        if extra is not None:
            columns[name] = _normalise(np.asarray(extra, dtype=np.float64))
    seconds = bars.ts // NS_PER_S
    day = 2 * np.pi * (seconds % 86_400) / 86_400
    week = 2 * np.pi * (seconds % (7 * 86_400)) / (7 * 86_400)
    if time_features != "none":
        columns.update(hour_sin=np.sin(day), hour_cos=np.cos(day))
    if time_features == "week":
        columns.update(week_sin=np.sin(week), week_cos=np.cos(week))
    names = tuple(columns)
    matrix = np.column_stack([columns[n] for n in names]).astype(np.float32)
    return MarketData(
        names=names,
        features=matrix,
        close=close.astype(np.float64),
        bar_notional=bars.notional.astype(np.float64),
        half_spread=None if bars.half_spread is None else bars.half_spread.astype(np.float64),
        ts=bars.ts,
        bar_seconds=bars.bar_seconds,
    )
