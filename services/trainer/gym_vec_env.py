"""`VecTradingEnv` behind gymnasium's vector API, so RLlib's env runners step N envs in one numpy call.

RLlib builds it through the `vector_entry_point` vectorize mode (see `rllib_env`). Gymnasium's
next-step autoreset, which RLlib's runner expects: the step that ends an episode returns its last
observation; the next step restarts that env (its action ignored, reward 0) and returns the first
observation of the new episode with `info["t"]`, the bar it starts at, as `TradingEnv.reset` does.
No Ray import.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from services.trainer.env import TradingEnv
from services.trainer.vec_env import VecTradingEnv
from shared.rl.env_config import EnvConfig
from shared.rl.features import MarketData

Obs = NDArray[np.float32]


class GymVecTradingEnv(gym.vector.VectorEnv[Obs, NDArray[Any], NDArray[Any]]):
    """`num_envs` trading episodes over one market; same dynamics and rewards as `TradingEnv`."""

    metadata: dict[str, Any] = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, market: MarketData, config: EnvConfig | None = None, num_envs: int = 8) -> None:
        self.vec = VecTradingEnv(market, config, num_envs=num_envs)
        self.num_envs = num_envs
        single = TradingEnv(market, self.vec.config)  # its spaces, so both envs agree by construction
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.observation_space = batch_space(single.observation_space, num_envs)
        self.action_space = batch_space(single.action_space, num_envs)
        self._pending = np.zeros(num_envs, dtype=bool)  # envs whose episode ended on the last step

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Obs, dict[str, Any]]:
        """Start every env at a random bar (or at `options['starts']`, one per env)."""
        if seed is not None:
            self.vec.rng = np.random.default_rng(seed)
        starts = None if not options or "starts" not in options else np.asarray(options["starts"], dtype=np.int64)
        obs = self.vec.reset(starts).copy()
        self._pending[:] = False
        return obs, {"t": self.vec.t.copy()}

    def step(
        self, actions: NDArray[Any]
    ) -> tuple[Obs, NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_], dict[str, Any]]:
        vec = self.vec
        restarting = np.flatnonzero(self._pending)
        if len(restarting):
            vec.restart(restarting)  # at fresh equity first, so the ignored step below divides by no zero
            starts = vec.t[restarting].copy()
        reward, terminated, truncated = vec.advance(actions)
        info: dict[str, Any] = {}
        if len(restarting):
            vec.restart(restarting, starts)  # undo the ignored step: the new episode starts at its first bar
            reward[restarting] = 0.0
            terminated[restarting] = truncated[restarting] = False
            info = {"t": vec.t.copy(), "_t": self._pending.copy()}
        self._pending = terminated | truncated
        return vec.observe().copy(), reward, terminated, truncated, info


def rllib_env(config: dict[str, Any]) -> TradingEnv | GymVecTradingEnv:
    """RLlib's env creator over its env_config (keys `market`, `env`): the vector env when RLlib asks
    for `num_envs` of them (vectorize mode `vector_entry_point`), else one `TradingEnv`."""
    if "num_envs" in config:
        return GymVecTradingEnv(config["market"], config["env"], num_envs=int(config["num_envs"]))
    return TradingEnv(config["market"], config["env"])
