"""Many portfolio envs stepped together over numpy arrays (envs x markets), for sweeps and fast rollouts.

Same accounting, lot rules, costs and rewards as `PortfolioEnv` / `Book` (the tests hold them equal),
laid out as arrays over envs: a market whose target changed is traded towards target x venue equity
by an order rounded towards zero to its lot step (none below the minimum quantity or notional), the
base amounts are held over the bar, funding and borrow are charged on what is held.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.trainer.portfolio_env import TARGET_EPS, Accounts
from shared.rl.env_config import PNL_FEATURE_SCALE
from shared.rl.features import WARMUP
from shared.rl.lots import EPS
from shared.rl.portfolio import PortfolioConfig, PortfolioData, observation_size, weight_bounds


class PortfolioVecEnv:
    """`num_envs` independent portfolio episodes over one data set; finished episodes restart on their own."""

    def __init__(
        self, data: PortfolioData, config: PortfolioConfig | None = None, num_envs: int = 256, seed: int | None = None
    ) -> None:
        self.data = data
        self.config = config or PortfolioConfig()
        self.num_envs = num_envs
        self.rng = np.random.default_rng(seed)
        acc = Accounts(data, self.config)
        self.venue, self.n_venues, self.borrow = acc.venue, acc.n_venues, acc.borrow
        self.costs = acc.costs
        self.step_size = np.array([r.step for r in acc.lots])
        self.min_qty = np.array([r.min_qty for r in acc.lots])
        self.min_notional = np.array([r.min_notional for r in acc.lots])
        self.decimals = [r.decimals for r in acc.lots]
        self.low, self.high = weight_bounds(data.markets, self.config)
        self.levels = np.asarray(self.config.levels, dtype=np.float64)
        self._last = data.last_return
        lo = max(self.config.start, min(WARMUP + max(self.config.lags, default=0), len(data) // 4))
        hi = len(data) if self.config.stop is None else min(self.config.stop, len(data))
        self._lo, self._hi = lo, hi
        self._length = min(self.config.episode_len, hi - 1 - lo)
        if self._length < 2:
            raise ValueError(f"portfolio vec env: the bar range [{lo}, {hi}) is too short for an episode")
        self.obs_size = observation_size(data)
        e, n = num_envs, data.n_markets
        self.t = np.zeros(e, dtype=np.int64)
        self.end = np.zeros(e, dtype=np.int64)
        self.cash = np.zeros((e, self.n_venues))
        self.qty = np.zeros((e, n))
        self.target = np.zeros((e, n))

    def reset(self, starts: NDArray[np.int64] | None = None) -> NDArray[np.float32]:
        """Start every env (at `starts`, or at random bars of the range), flat, each venue funded."""
        self._restart(np.arange(self.num_envs), starts)
        return self._observe()

    def _restart(self, idx: NDArray[np.int64], starts: NDArray[np.int64] | None = None) -> None:
        if starts is None:
            starts = self.rng.integers(self._lo, self._hi - self._length, size=len(idx))
        self.t[idx] = starts
        self.end[idx] = np.minimum(np.asarray(starts) + self._length, self._hi - 1)
        self.cash[idx] = self.config.initial_cash
        self.qty[idx] = 0.0
        self.target[idx] = 0.0

    def equity(self, t: NDArray[np.int64] | None = None) -> NDArray[np.float64]:
        """(envs, venues) equity at close[t] (default: each env's current bar)."""
        value = self.qty * self.data.close[self.t if t is None else t]
        out = self.cash.copy()
        for v in range(self.n_venues):
            out[:, v] += value[:, self.venue == v].sum(axis=1)
        return out

    def _observe(self) -> NDArray[np.float32]:
        n = self.data.n_markets
        eq = self.equity()[:, self.venue]
        value = self.qty * self.data.close[self.t]
        held = np.divide(value, eq, out=np.zeros_like(value), where=eq > 0)
        obs = np.empty((self.num_envs, self.obs_size), dtype=np.float32)
        obs[:, : -2 * n] = self.data.features[self.t]
        obs[:, -2 * n : -n] = held
        obs[:, -n:] = held * self._last[self.t] * PNL_FEATURE_SCALE
        return obs

    def weights(self, actions: Any) -> NDArray[np.float64]:
        """Venue-limited target weights (envs, markets), as `action_to_weights` gives them one by one."""
        n = self.data.n_markets
        if self.config.continuous:
            w = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)[:, :n]
        else:
            k = len(self.levels)
            index = np.asarray(actions, dtype=np.int64).reshape(-1)
            w = self.levels[(index[:, None] // k ** np.arange(n)) % k]
        w = np.clip(np.nan_to_num(w), self.low, self.high)
        for v in range(self.n_venues):
            cols = self.venue == v
            gross = np.abs(w[:, cols]).sum(axis=1, keepdims=True)
            w[:, cols] = np.where(gross > 1.0, w[:, cols] / np.where(gross > 1.0, gross, 1.0), w[:, cols])
        return w

    def _orders(self, wanted: NDArray[np.float64], price: NDArray[np.float64]) -> NDArray[np.float64]:
        """`LotRule.order` over (envs, markets): rounded towards zero to the step, 0 below the minimums."""
        size = np.abs(wanted)
        ok = (size > 0) & (size >= self.min_qty * (1 - EPS))
        stepped = self.step_size > 0
        steps = np.floor((size - self.min_qty) / np.where(stepped, self.step_size, 1.0) + EPS)
        rounded = self.min_qty + np.maximum(steps, 0) * self.step_size
        for j, places in enumerate(self.decimals):
            if stepped[j]:
                size[:, j] = np.round(rounded[:, j], places)
        ok &= size * price >= self.min_notional * (1 - EPS)
        return np.where(ok, np.copysign(size, wanted), 0.0)

    def step(
        self, actions: Any
    ) -> tuple[NDArray[np.float32], NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_]]:
        """Apply one action per env; returns (obs, reward, terminated, truncated), auto-resetting done envs."""
        data, t = self.data, self.t
        target = self.weights(actions)
        price = data.close[t]
        equity = self.equity()
        before = equity.sum(axis=1)
        venue_eq = equity[:, self.venue]
        wanted = target * np.maximum(venue_eq, 0.0) / price - self.qty
        amount = np.where(np.abs(target - self.target) > TARGET_EPS, self._orders(wanted, price), 0.0)
        notional = amount * price
        fee = np.zeros_like(notional)
        for j, cost in enumerate(self.costs):
            fee[:, j] = np.where(amount[:, j] != 0.0, cost.cost(notional[:, j], data.bar_notional[t, j]), 0.0)
        self.qty = self.qty + amount
        value = self.qty * price
        carry = value * data.funding[t] + np.maximum(-value, 0.0) * self.borrow
        for v in range(self.n_venues):
            cols = self.venue == v
            self.cash[:, v] -= (notional[:, cols] + fee[:, cols] + carry[:, cols]).sum(axis=1)
        self.target = target
        self.t = t + 1
        after_v = self.equity()
        broke = after_v <= 0.0
        if broke.any():  # a venue whose equity is gone is liquidated
            self.cash[broke] = 0.0
            self.qty[broke[:, self.venue]] = 0.0
            after_v = self.equity()
        after = after_v.sum(axis=1)
        ratio = np.divide(after, before, out=np.zeros_like(after), where=before > 0)
        reward = np.where(before > 0, (ratio - 1.0) * self.config.reward_scale, -1.0)
        terminated = after <= 0.0
        truncated = (self.t >= self.end) & ~terminated
        done = np.flatnonzero(terminated | truncated)
        if len(done):
            self._restart(done)
        return self._observe(), reward, terminated, truncated
