"""Many trading envs stepped together in one numpy call per operation.

Same dynamics, costs and rewards as `TradingEnv` (the tests hold them equal), laid out as
arrays over envs so one core steps millions of env-steps per second: the env is never the
bottleneck of training or of a hyper-parameter sweep.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from shared.rl.env_config import PNL_FEATURE_SCALE, EnvConfig, observation_size
from shared.rl.features import MarketData


class VecTradingEnv:
    """`num_envs` independent episodes over one market; finished episodes restart on their own."""

    def __init__(
        self, market: MarketData, config: EnvConfig | None = None, num_envs: int = 1024, seed: int | None = None
    ) -> None:
        self.market = market
        self.config = config or EnvConfig()
        self.num_envs = num_envs
        self.levels = np.asarray(self.config.position_levels, dtype=np.float64)
        self._lo, self._hi = self.config.window(len(market))
        self._length = min(self.config.episode_len, self._hi - 1 - self._lo)
        self.rng = np.random.default_rng(seed)
        self._features = market.features
        self._close = market.close
        self._growth = np.zeros(len(market))  # close[t+1]/close[t] - 1, indexed by t
        self._growth[:-1] = market.close[1:] / market.close[:-1] - 1.0
        self._last = market.last_return
        self._notional = market.bar_notional
        self._spread = market.half_spread
        self.obs_size = observation_size(market)
        self._obs = np.empty((num_envs, self.obs_size), dtype=np.float32)
        n = num_envs
        self.t = np.zeros(n, dtype=np.int64)
        self.end = np.zeros(n, dtype=np.int64)
        self.position = np.zeros(n)
        self.equity = np.zeros(n)
        self.peak = np.zeros(n)
        self.dsr_a = np.zeros(n)
        self.dsr_b = np.zeros(n)

    def reset(self, starts: NDArray[np.int64] | None = None) -> NDArray[np.float32]:
        """Start every env (at `starts`, or at random bars of the range)."""
        self.restart(np.arange(self.num_envs), starts)
        return self.observe()

    def restart(self, idx: NDArray[np.int64], starts: NDArray[np.int64] | None = None) -> None:
        if starts is None:
            starts = self.rng.integers(self._lo, self._hi - self._length, size=len(idx))
        self.t[idx] = starts
        self.end[idx] = np.minimum(starts + self._length, self._hi - 1)
        self.position[idx] = 0.0
        self.equity[idx] = self.config.initial_cash
        self.peak[idx] = self.config.initial_cash
        self.dsr_a[idx] = 0.0
        self.dsr_b[idx] = 0.0

    def observe(self) -> NDArray[np.float32]:
        obs = self._obs
        np.take(self._features, self.t, axis=0, out=obs[:, :-2])
        obs[:, -2] = self.position
        obs[:, -1] = self.position * self._last[self.t] * PNL_FEATURE_SCALE
        return obs

    def step(
        self, actions: NDArray[np.generic]
    ) -> tuple[NDArray[np.float32], NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_]]:
        """Apply one action per env; returns (obs, reward, terminated, truncated), auto-resetting done envs."""
        reward, terminated, truncated = self.advance(actions)
        done = np.flatnonzero(terminated | truncated)
        if len(done):
            self.restart(done)
        return self.observe(), reward, terminated, truncated

    def advance(self, actions: NDArray[np.generic]) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_]]:
        """One bar for every env, finished ones left at their last bar: (reward, terminated, truncated)."""
        cfg = self.config
        t = self.t
        if cfg.continuous:
            target = np.clip(np.asarray(actions, dtype=np.float64).reshape(-1), cfg.min_position, 1.0)
        else:
            target = self.levels[actions]
        traded = np.abs(target - self.position) * self.equity
        spread = None if self._spread is None else self._spread[t]
        cost = cfg.cost.cost(traded, self._notional[t], spread)
        before = self.equity
        after = np.maximum((before - cost) * (1.0 + target * self._growth[t]), 0.0)
        reward = self._reward(before, after)
        self.position = target
        self.equity = after
        self.t = t + 1
        terminated = after <= 0.0
        truncated = (self.t >= self.end) & ~terminated
        return reward, terminated, truncated

    def _reward(self, before: NDArray[np.float64], after: NDArray[np.float64]) -> NDArray[np.float64]:
        cfg = self.config
        ret = after / before - 1.0
        if cfg.reward == "log":
            return np.log(np.maximum(after, 1e-12) / before) * cfg.reward_scale
        if cfg.reward == "dsr":
            da, db = ret - self.dsr_a, ret * ret - self.dsr_b
            var = self.dsr_b - self.dsr_a**2
            safe = np.where(var > 1e-12, var, 1.0)
            dsr = np.where(var > 1e-12, (self.dsr_b * da - 0.5 * self.dsr_a * db) / safe**1.5, 0.0)
            self.dsr_a = self.dsr_a + cfg.dsr_eta * da
            self.dsr_b = self.dsr_b + cfg.dsr_eta * db
            return dsr
        if cfg.reward == "drawdown":
            old_dd = 1.0 - before / self.peak
            self.peak = np.maximum(self.peak, after)
            new_dd = 1.0 - after / self.peak
            return (ret - cfg.drawdown_penalty * np.maximum(0.0, new_dd - old_dd)) * cfg.reward_scale
        return ret * cfg.reward_scale
