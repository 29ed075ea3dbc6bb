"""The trading environment: a plain gymnasium env over numpy arrays (no Ray import).

One step = one bar. Having seen bar t close, the agent picks a target position (a fraction of
equity: -1 short, 0 flat, 1 long, or finer levels); the change is traded at close[t] through
the cost model, then the position earns close[t+1]/close[t] - 1. The reward is the change in
portfolio value net of costs, optionally risk-adjusted.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from shared.rl.env_config import PNL_FEATURE_SCALE, EnvConfig, observation_size
from shared.rl.features import MarketData


def episode_window(
    rng: np.random.Generator, lo: int, hi: int, episode_len: int, options: dict[str, Any] | None
) -> tuple[int, int]:
    """(first bar, last bar) of an episode in bars [lo, hi): at a random start, or at `options['start']`."""
    length = min(episode_len, hi - 1 - lo)
    start = int(options["start"]) if options and "start" in options else int(rng.integers(lo, hi - length))
    return start, min(start + length, hi - 1)


class TradingEnv(gym.Env[NDArray[np.float32], Any]):
    """Single trading env; observation = market features at t, position, last-bar PnL of the position."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, market: MarketData, config: EnvConfig | None = None) -> None:
        self.market = market
        self.config = config or EnvConfig()
        self._levels = self.config.position_levels
        self._lo, self._hi = self.config.window(len(market))
        n_obs = self._obs_size = observation_size(market)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(n_obs,), dtype=np.float32)
        if self.config.continuous:
            self.action_space: gym.Space[Any] = gym.spaces.Box(
                self.config.min_position, 1.0, shape=(1,), dtype=np.float32
            )
        else:
            self.action_space = gym.spaces.Discrete(len(self._levels))
        self._close = market.close.tolist()
        self._notional = market.bar_notional.tolist()
        self._spread = None if market.half_spread is None else market.half_spread.tolist()
        self._cost_model = self.config.cost
        self.t = self._lo
        self.end = self._hi - 1
        self.position = 0.0
        self.equity = self.config.initial_cash
        self.peak = self.equity
        self._dsr_a = 0.0
        self._dsr_b = 0.0

    def target_position(self, action: Any) -> float:
        """The position an action asks for."""
        if self.config.continuous:
            return float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], self.config.min_position, 1.0))
        return self._levels[int(action)]

    def _obs(self) -> NDArray[np.float32]:
        t = self.t
        last = self._close[t] / self._close[t - 1] - 1.0 if t > 0 else 0.0
        obs = np.empty(self._obs_size, dtype=np.float32)
        obs[:-2] = self.market.features[t]
        obs[-2] = self.position
        obs[-1] = self.position * last * PNL_FEATURE_SCALE
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Start an episode at a random bar of the range (or at `options['start']`)."""
        super().reset(seed=seed)
        self.t, self.end = episode_window(self.np_random, self._lo, self._hi, self.config.episode_len, options)
        self.position = 0.0
        self.equity = self.peak = self.config.initial_cash
        self._dsr_a = self._dsr_b = 0.0
        return self._obs(), {"t": self.t}

    def step(self, action: Any) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        t = self.t
        target = self.target_position(action)
        traded = abs(target - self.position) * self.equity
        cost = 0.0
        if traded > 0.0:
            spread = None if self._spread is None else self._spread[t]
            cost = self._cost_model.cost_one(traded, self._notional[t], spread)
        growth = 1.0 + target * (self._close[t + 1] / self._close[t] - 1.0)
        before = self.equity
        after = max((before - cost) * growth, 0.0)
        self.position = target
        self.equity = after
        self.t = t + 1
        reward = self._reward(before, after)
        terminated = after <= 0.0
        truncated = self.t >= self.end and not terminated
        info = {"equity": after, "cost": cost, "traded": traded, "t": self.t}
        return self._obs(), reward, terminated, truncated, info

    def _reward(self, before: float, after: float) -> float:
        cfg = self.config
        ret = after / before - 1.0 if before > 0 else -1.0
        if cfg.reward == "log":
            return math.log(max(after, 1e-12) / before) * cfg.reward_scale
        if cfg.reward == "dsr":
            # Moody & Saffell's differential Sharpe ratio: the Sharpe gain from this return.
            da, db = ret - self._dsr_a, ret * ret - self._dsr_b
            var = self._dsr_b - self._dsr_a**2
            dsr = (self._dsr_b * da - 0.5 * self._dsr_a * db) / var**1.5 if var > 1e-12 else 0.0
            self._dsr_a += cfg.dsr_eta * da
            self._dsr_b += cfg.dsr_eta * db
            return dsr
        if cfg.reward == "drawdown":
            old_dd = 1.0 - before / self.peak
            self.peak = max(self.peak, after)
            new_dd = 1.0 - after / self.peak
            return (ret - cfg.drawdown_penalty * max(0.0, new_dd - old_dd)) * cfg.reward_scale
        return ret * cfg.reward_scale
