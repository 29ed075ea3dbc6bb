"""The vector env RLlib's runners step: equal to single `TradingEnv`s across episode ends, and so are
the episodes an RLlib env runner collects through it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.trainer.env import TradingEnv
from services.trainer.gym_vec_env import GymVecTradingEnv
from services.trainer.synth import make_market
from services.trainer.training import build_algorithm_config, load_config, ray_session
from shared.rl.env_config import EnvConfig
from shared.rl.features import WARMUP, compute_features

MARKET = compute_features(make_market("regime_momentum", 3_000, seed=3).bars)


@pytest.mark.parametrize("reward", ["pnl", "dsr", "drawdown"])
def test_vector_env_equals_single_envs_across_episode_ends(reward: str) -> None:
    cfg = EnvConfig(reward=reward, episode_len=40)  # type: ignore[arg-type]
    n = 5
    env = GymVecTradingEnv(MARKET, cfg, num_envs=n)
    starts = np.arange(n, dtype=np.int64) * 300 + WARMUP
    obs, info = env.reset(seed=4, options={"starts": starts})
    singles = [TradingEnv(MARKET, cfg) for _ in range(n)]
    expected = np.stack([e.reset(options={"start": int(s)})[0] for e, s in zip(singles, starts, strict=True)])
    np.testing.assert_array_equal(obs, expected)
    np.testing.assert_array_equal(info["t"], starts)
    rng = np.random.default_rng(2)
    done = np.zeros(n, dtype=bool)
    restarts = 0
    for _ in range(130):  # three episodes per env
        actions = rng.integers(0, 3, n)
        obs, reward_v, term, trunc, info = env.step(actions)
        for i, single in enumerate(singles):
            if done[i]:  # next-step autoreset: the action is ignored, the new episode's first bar comes back
                assert info["_t"][i] and reward_v[i] == 0.0 and not (term[i] or trunc[i])
                first, _ = single.reset(options={"start": int(info["t"][i])})
                np.testing.assert_array_equal(obs[i], first)
                restarts += 1
                continue
            s_obs, s_reward, s_term, s_trunc, _ = single.step(int(actions[i]))
            np.testing.assert_allclose(obs[i], s_obs, rtol=1e-6)
            assert reward_v[i] == pytest.approx(s_reward, rel=1e-9, abs=1e-12)
            assert (term[i], trunc[i]) == (s_term, s_trunc)
        done = term | trunc
    assert restarts >= 2 * n  # the episode ends were really crossed


def test_seeded_reset_repeats_the_starts() -> None:
    a, b = GymVecTradingEnv(MARKET, num_envs=16), GymVecTradingEnv(MARKET, num_envs=16)
    np.testing.assert_array_equal(a.reset(seed=7)[1]["t"], b.reset(seed=7)[1]["t"])
    assert len(set(a.reset(seed=8)[1]["t"].tolist())) > 1  # random starts, not one bar


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algo", "mode"), [("ppo", "vector_entry_point"), ("dqn", "vector_entry_point"), ("ppo", "sync")]
)
def test_rllib_runner_episodes_replay_on_the_single_env(algo: str, mode: str) -> None:
    overrides = ("env.episode_len=60", "env_runners.num_envs_per_env_runner=6")
    if mode != "vector_entry_point":  # the default; `sync` is gymnasium's loop over single envs
        overrides += (f"env_runners.gym_env_vectorize_mode={mode}",)
    config = load_config(algo, overrides=overrides)
    env_config = EnvConfig(episode_len=60, stop=2_000)
    with ray_session(num_cpus=1):
        algorithm = build_algorithm_config(algo, config, MARKET, env_config, seed=5, gpus=0.0).build_algo()
        try:
            runner: Any = algorithm.env_runner
            assert isinstance(runner.env.unwrapped, GymVecTradingEnv) == (mode == "vector_entry_point")
            episodes = runner.sample(num_timesteps=600, explore=True)
        finally:
            algorithm.stop()
    assert sum(len(e) for e in episodes) >= 600
    assert sum(e.is_done for e in episodes) >= 6  # whole episodes, restarted by the vector env
    single = TradingEnv(MARKET, env_config)
    for episode in episodes:
        assert episode.t_started == 0  # every episode began in this sample: its first info is the reset's
        obs, _ = single.reset(options={"start": int(episode.get_infos(0)["t"])})
        observations = episode.get_observations()
        np.testing.assert_array_equal(observations[0], obs)
        for k, (action, reward) in enumerate(zip(episode.get_actions(), episode.get_rewards(), strict=True)):
            obs, single_reward, terminated, truncated, _ = single.step(int(action))
            np.testing.assert_allclose(observations[k + 1], obs, rtol=1e-6)
            assert reward == pytest.approx(single_reward, rel=1e-9, abs=1e-12)
        assert episode.is_truncated == truncated and episode.is_terminated == terminated
