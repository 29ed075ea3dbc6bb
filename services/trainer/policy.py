"""Policies that turn bars into positions: the rule-based baselines, and `load_policy` for the CLI.

Trained policies load from their weights-only `actor.npz` (`shared.rl.weights`, shared with the executor).
Here a policy is anything with `positions(market, start, stop, config)` over a whole backtest;
`shared.rl.policy` is the other `policy.py`: a trained network acting bar by bar, the executor's too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from shared.rl.env_config import EnvConfig
from shared.rl.features import MarketData
from shared.rl.policy import PolicyError
from shared.rl.weights import load_weights_policy

MOMENTUM_LOOKBACK = 60


class Policy(Protocol):
    @property
    def name(self) -> str: ...

    def positions(self, market: MarketData, start: int, stop: int, config: EnvConfig) -> NDArray[np.float64]:
        """The position held over each bar in [start, stop), starting flat."""
        ...


@dataclass(frozen=True)
class Baseline:
    """A rule-based policy, the yardstick every learned policy must beat out of sample."""

    name: str
    rule: Callable[[MarketData, int, int, EnvConfig], NDArray[np.float64]]

    def positions(self, market: MarketData, start: int, stop: int, config: EnvConfig) -> NDArray[np.float64]:
        return self.rule(market, start, stop, config)


def _buy_and_hold(market: MarketData, start: int, stop: int, config: EnvConfig) -> NDArray[np.float64]:
    return np.ones(stop - start)


def _flat(market: MarketData, start: int, stop: int, config: EnvConfig) -> NDArray[np.float64]:
    return np.zeros(stop - start)


def _momentum(market: MarketData, start: int, stop: int, config: EnvConfig) -> NDArray[np.float64]:
    """Long after a rise over the last hour of bars, short (or flat without margin) after a fall."""
    t = np.arange(start, stop)
    past = market.close[np.maximum(t - MOMENTUM_LOOKBACK, 0)]
    signal = np.sign(market.close[t] - past)
    return np.where(signal < 0, config.min_position, signal)


BASELINES: dict[str, Baseline] = {
    "buy_and_hold": Baseline("buy_and_hold", _buy_and_hold),
    "flat": Baseline("flat", _flat),
    "momentum": Baseline("momentum", _momentum),
}


def load_policy(spec: str, root: str | Path) -> Policy:
    """`baseline:NAME`, or a checkpoint directory (or its `actor.npz`) under the policy directory
    `root`: its weights-only actor, never the pickled RLModule (`#sha256=<hex>` is checked when given)."""
    if spec.startswith("baseline:"):
        name = spec.removeprefix("baseline:")
        if name not in BASELINES:
            raise PolicyError(f"--policy {spec}: unknown baseline; expected one of {', '.join(BASELINES)}")
        return BASELINES[name]
    return load_weights_policy(spec, root)
