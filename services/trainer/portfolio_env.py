"""The portfolio environment: N time-aligned markets on one or more venues, plain gymnasium over numpy.

One step = one bar. Having seen bar t close, the agent sets a target weight per market (a
fraction of its venue's equity; `shared.rl.portfolio.action_to_weights` applies the venue's
limits). A market whose target changed is traded at close[t] towards target x venue equity, by an
order in base units that the market's lot rules round towards zero (none below the minimum
quantity or notional: `shared.rl.lots`), through that venue's cost model and paid from that
venue's cash; a target left unchanged is not rebalanced as prices drift (as in the executor).
Then the base amounts are held over bar t -> t+1: each venue's equity is its cash plus its
positions at the close, minus funding on perpetuals (longs pay, shorts receive) and borrow
interest on spot shorts. No money moves between venues. The reward is the change of the total
equity. `Book` is the one accounting rule: the env and the backtest both step it.
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
TARGET_EPS = 1e-9  # a target that moved less than this is held, not traded (the executor's rule)


class Accounts:
    """Per-market constants of the accounting: venue of each market, cost models, lot rules, borrow per bar."""

    def __init__(self, data: PortfolioData, config: PortfolioConfig) -> None:
        self.venue = data.venue_index
        self.n_venues = len(data.venues)
        self.costs = [config.cost_for(ex) for ex, _ in data.markets]
        self.lots = [config.lot_for(m) for m in data.markets]
        spot = np.array([not is_perpetual(ex) for ex, _ in data.markets])
        self.borrow = np.where(spot, config.borrow_rate_annual * data.bar_seconds / SECONDS_PER_YEAR, 0.0)


class Book:
    """What one account holds: cash per venue, base amount per market, and the target last chosen."""

    def __init__(self, data: PortfolioData, accounts: Accounts, initial_cash: float) -> None:
        self.data = data
        self.accounts = accounts
        self.cash = np.full(accounts.n_venues, initial_cash)
        self.qty = np.zeros(data.n_markets)
        self.target = np.zeros(data.n_markets)

    def equity(self, t: int) -> NDArray[np.float64]:
        """Each venue's equity at close[t]: its cash plus its positions (a short counts negative)."""
        value = self.qty * self.data.close[t]
        return self.cash + np.bincount(self.accounts.venue, value, self.accounts.n_venues)

    def weights(self, t: int) -> NDArray[np.float64]:
        """The weights held at close[t]: position value over its venue's equity (what fills measure)."""
        eq = self.equity(t)[self.accounts.venue]
        return np.divide(self.qty * self.data.close[t], eq, out=np.zeros_like(self.qty), where=eq > 0)

    def step(self, t: int, target: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        """Trade the markets whose target changed at close[t], hold over bar t -> t+1: (cost, traded), where
        `traded` is each market's signed traded notional over its venue's equity (0: no order)."""
        data, acc = self.data, self.accounts
        price = data.close[t]
        equity = self.equity(t)
        traded = np.zeros(data.n_markets)
        cost = 0.0
        for i in np.flatnonzero(np.abs(target - self.target) > TARGET_EPS):
            v = acc.venue[i]
            amount = acc.lots[i].order(target[i] * max(equity[v], 0.0) / price[i] - self.qty[i], price[i])
            if amount == 0.0:
                continue  # below one lot or the minimum notional: the venue takes no order
            notional = amount * price[i]
            fee = acc.costs[i].cost_one(notional, float(data.bar_notional[t, i]))
            self.qty[i] += amount
            self.cash[v] -= notional + fee
            traded[i] = notional / equity[v] if equity[v] > 0 else 0.0
            cost += fee
        self.target = target.copy()
        value = self.qty * price  # funding on perpetuals and borrow on spot shorts, on the notional held
        carry = value * data.funding[t] + np.maximum(-value, 0.0) * acc.borrow
        self.cash -= np.bincount(acc.venue, carry, acc.n_venues)
        broke = self.equity(t + 1) <= 0.0
        if broke.any():  # a venue whose equity is gone is liquidated: nothing left to trade with there
            self.cash[broke] = 0.0
            self.qty[broke[acc.venue]] = 0.0
        return cost, traded


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
        self.book = Book(data, self.accounts, self.config.initial_cash)
        self._last = data.last_return
        self._lo = max(self.config.start, min(WARMUP + max(self.config.lags, default=0), len(data) // 4))
        self._hi = len(data) if self.config.stop is None else min(self.config.stop, len(data))
        if self._hi - self._lo < 3:
            raise ValueError(f"portfolio env: the bar range [{self._lo}, {self._hi}) is too short for an episode")
        self.t = self._lo
        self.end = self._hi - 1

    @property
    def equity(self) -> NDArray[np.float64]:
        """Each venue's equity at the current bar's close."""
        return self.book.equity(self.t)

    def _obs(self) -> NDArray[np.float32]:
        return observe(self.data.features[self.t], self.book.weights(self.t), self._last[self.t])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Start an episode at a random bar of the range (or at `options['start']`), flat, each venue funded."""
        super().reset(seed=seed)
        self.t, self.end = episode_window(self.np_random, self._lo, self._hi, self.config.episode_len, options)
        self.book = Book(self.data, self.accounts, self.config.initial_cash)
        return self._obs(), {"t": self.t}

    def step(self, action: Any) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        target = action_to_weights(action, self.markets, self.config)
        before = float(self.equity.sum())
        cost, traded = self.book.step(self.t, target)
        self.t += 1
        after = float(self.equity.sum())
        reward = (after / before - 1.0) * self.config.reward_scale if before > 0 else -1.0
        terminated = after <= 0.0
        truncated = self.t >= self.end and not terminated
        info = {
            "equity": after,
            "cost": cost,
            "traded": traded,
            "t": self.t,
            "weights": target,
            "qty": self.book.qty.copy(),
        }
        return self._obs(), reward, terminated, truncated, info
