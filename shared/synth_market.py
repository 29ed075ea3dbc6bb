"""The price path of `tradewind up --mode synth`: a mean-reverting market that drifts down.

The log price is an Ornstein-Uhlenbeck deviation around a mean that falls by `drift` per step:
``x[t] = -drift * t + z[t]``, ``z[t] = (1 - theta) * z[t-1] + sigma * e[t]``. Dips revert within a
few steps, so buying them and selling the bounce earns more than the fees; the drift makes holding
lose, so on a spot market (long or flat) buy-and-hold, momentum and a random policy all fail the
online trainer's promotion rule (tests/shared/test_synth_market.py): a promotion means the dips
were learned. The ingest service serves this path in Binance's wire format
(``services.ingest.synth``); the tests judge the baselines on the same path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

EXCHANGE = "synth"  # the venue name everything generated is labelled with
SYMBOL = "SYN/USDT"
VENUE_SYMBOL = "SYNUSDT"
START_PRICE = 1_000.0


@dataclass(frozen=True)
class SynthParams:
    """One generated market: its seed and process, and the step (bar) length it is built for."""

    seed: int = 1
    theta: float = 0.2  # share of a deviation reverted per step
    sigma: float = 0.004  # std of the log-price shock per step
    drift: float = 0.0001  # fall of the mean log price per step
    step_s: float = 0.25  # seconds per step: the online trainer's bar in synth mode


def log_prices(n: int, params: SynthParams) -> NDArray[np.float64]:
    """`n` steps of the log price (relative to the start price)."""
    rng = np.random.default_rng(params.seed)
    shocks = rng.normal(0.0, params.sigma, n)
    z = np.zeros(n)
    keep = 1.0 - params.theta
    for i in range(1, n):
        z[i] = z[i - 1] * keep + shocks[i]
    return z - params.drift * np.arange(n)


def prices(n: int, params: SynthParams) -> NDArray[np.float64]:
    """`n` steps of the price, starting at `START_PRICE`."""
    return START_PRICE * np.exp(log_prices(n, params))
