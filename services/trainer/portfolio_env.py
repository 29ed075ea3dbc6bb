"""The portfolio environment: N time-aligned markets on one or more venues, plain gymnasium over numpy.

One step = one bar. Having seen bar t close, the agent sets a target weight per market (a
fraction of its venue's equity; `shared.rl.portfolio.action_to_weights` applies the venue's
limits). Each weight change is traded at close[t] through that venue's cost model and paid from
that venue's cash; then over bar t -> t+1 each venue's equity earns its markets' weighted
returns, minus funding on perpetuals (longs pay, shorts receive) and borrow interest on spot
shorts. No money moves between venues. The reward is the change of the total equity.
`bar_step` is the one accounting rule: the env and the backtest both call it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from services.trainer.env import episode_window
from shared.rl.features import WARMUP
from shared.rl.portfolio import (
    PortfolioConfig,
    PortfolioData,
    action_to_weights,
    is_perpetual,
    joint_size,
    observation_size,
    observe,
)

SECONDS_PER_YEAR = 365.25 * 86_400


class Accounts:
    """Per-market constants of the accounting: venue of each market, cost models, borrow per bar."""

    def __init__(self, data: PortfolioData, config: PortfolioConfig) -> None:
        self.venue = data.venue_index
        self.n_venues = len(data.venues)
        self.costs = [config.cost_for(ex) for ex, _ in data.markets]
        spot = np.array([not is_perpetual(ex) for ex, _ in data.markets])
        self.borrow = np.where(spot, config.borrow_rate_annual * data.bar_seconds / SECONDS_PER_YEAR, 0.0)
        self.growth = np.zeros_like(data.close)  # close[t+1]/close[t] - 1, indexed by t
        self.growth[:-1] = data.close[1:] / data.close[:-1] - 1.0


def bar_step(
    data: PortfolioData,
    accounts: Accounts,
    t: int,
    equity: NDArray[np.float64],
    held: NDArray[np.float64],
    target: NDArray[np.float64],
) -> tuple[NDArray[np.float64], float, float]:
    """Trade `held` -> `target` at close[t], hold over bar t -> t+1: (venue equity after, cost, traded)."""
    traded = np.abs(target - held) * equity[accounts.venue]
    cost = np.array(
        [
            c.cost_one(float(q), float(data.bar_notional[t, i])) if q > 0 else 0.0
            for i, (c, q) in enumerate(zip(accounts.costs, traded, strict=True))
        ]
    )
    pnl = target * (accounts.growth[t] - data.funding[t]) - np.maximum(-target, 0.0) * accounts.borrow
    venue_cost = np.bincount(accounts.venue, cost, accounts.n_venues)
    venue_growth = 1.0 + np.bincount(accounts.venue, pnl, accounts.n_venues)
    after = np.maximum((equity - venue_cost) * venue_growth, 0.0)
    return after, float(cost.sum()), float(traded.sum())


class PortfolioEnv(gym.Env[NDArray[np.float32], Any]):
    """Observation: portfolio features at t, weights held, their last-bar PnL (`shared.rl.portfolio.observe`)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, data: PortfolioData, config: PortfolioConfig | None = None) -> None:
        self.data = data
        self.config = config or PortfolioConfig()
        self.markets = list(data.markets)
        n = data.n_markets
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(observation_size(data),), dtype=np.float32)
        if self.config.continuous:  # the env maps [-1, 1] onto each market's limits (long-only: [0, 1])
            self.action_space: gym.Space[Any] = gym.spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)
        else:
            self.action_space = gym.spaces.Discrete(joint_size(n, self.config))
        self.accounts = Accounts(data, self.config)
        self._last = data.last_return
        self._lo = max(self.config.start, min(WARMUP + max(self.config.lags, default=0), len(data) // 4))
        self._hi = len(data) if self.config.stop is None else min(self.config.stop, len(data))
        if self._hi - self._lo < 3:
            raise ValueError(f"portfolio env: the bar range [{self._lo}, {self._hi}) is too short for an episode")
        self.t = self._lo
        self.end = self._hi - 1
        self.weights = np.zeros(n)
        self.equity = np.full(self.accounts.n_venues, self.config.initial_cash)

    def _obs(self) -> NDArray[np.float32]:
        return observe(self.data.features[self.t], self.weights, self._last[self.t])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Start an episode at a random bar of the range (or at `options['start']`), flat, each venue funded."""
        super().reset(seed=seed)
        self.t, self.end = episode_window(self.np_random, self._lo, self._hi, self.config.episode_len, options)
        self.weights = np.zeros(len(self.markets))
        self.equity = np.full(self.accounts.n_venues, self.config.initial_cash)
        return self._obs(), {"t": self.t}

    def step(self, action: Any) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        target = action_to_weights(action, self.markets, self.config)
        before = float(self.equity.sum())
        self.equity, cost, traded = bar_step(self.data, self.accounts, self.t, self.equity, self.weights, target)
        after = float(self.equity.sum())
        self.weights = target
        self.t += 1
        reward = (after / before - 1.0) * self.config.reward_scale if before > 0 else -1.0
        terminated = after <= 0.0
        truncated = self.t >= self.end and not terminated
        info = {"equity": after, "cost": cost, "traded": traded, "t": self.t, "weights": target}
        return self._obs(), reward, terminated, truncated, info
