"""Learning proof on synthetic lead-lag markets: one venue's price leads another's by a bar.

A PPO portfolio policy that sees both markets must beat every baseline out of sample after fees
and reach at least 80% of the known-structure rule's Sharpe (median of 3 seeds); a single-market
policy trained on the follower alone (the control) cannot see the leader and must not.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest

from services.trainer.portfolio_eval import portfolio_metrics, simulate_weights
from services.trainer.portfolio_training import portfolio_data, train_portfolio
from services.trainer.synth import lead_lag
from services.trainer.training import load_config, ray_session, train
from shared.rl.policy import ALGORITHM_DIR, MODULE_PATH
from shared.rl.portfolio import load_portfolio_policy

BARS = 8_000
TIMESTEPS = 20_000
SMALL = (
    'features.time="none"',
    "model.fcnet_hiddens=[32]",
    "training.train_batch_size_per_learner=2000",
    "training.minibatch_size=250",
    "training.lr=0.001",
    "training.entropy_coeff=0.0",
    "env.episode_len=500",
    "env_runners.num_envs_per_env_runner=4",
)


@pytest.mark.slow
def test_ppo_portfolio_learns_the_lead_lag_and_the_follower_alone_cannot(tmp_path: Path) -> None:
    config = load_config("ppo", overrides=SMALL)
    sharpes, rules, figures = [], [], []
    with ray_session(num_cpus=2):
        for seed in range(3):
            synth = lead_lag(BARS, seed=seed)
            out = tmp_path / f"ppo-{seed}"
            result = train_portfolio(synth.bars, synth.markets, "ppo", out, TIMESTEPS, seed, config=config)
            test = result.metrics["test"]
            policy = load_portfolio_policy(out, None)
            data = portfolio_data(synth.bars, synth.markets, config, "ppo")
            start = int(np.searchsorted(data.ts, policy.meta["validation_to_ns"], side="right"))
            rule_w = synth.rule_weights[start : len(data) - 1]
            rule = portfolio_metrics(*simulate_weights(data, rule_w, start, policy.config))
            for name, base in test["baselines"].items():
                assert test["sharpe"] > base["sharpe"], (
                    f"seed {seed}: {name} {base['sharpe']:.2f} >= {test['sharpe']:.2f}"
                )
                assert test["total_return"] > base["total_return"], f"seed {seed}: {name} returns more"
            sharpes.append(test["sharpe"])
            rules.append(rule["sharpe"])
            figures.append((seed, round(test["sharpe"], 1), round(rule["sharpe"], 1), round(test["total_return"], 3)))
            if seed == 0:  # the exported weights act as the trained module does
                import torch
                from ray.rllib.core.rl_module.rl_module import RLModule

                module = RLModule.from_checkpoint(str(out.joinpath(ALGORITHM_DIR, *MODULE_PATH)))
                obs = np.random.default_rng(0).normal(0, 1, (64, policy.net.streams["actor"][0][0].shape[0]))
                with torch.inference_mode():
                    dist = module.forward_inference({"obs": torch.from_numpy(obs.astype(np.float32))})
                expected = dist["action_dist_inputs"].numpy()[:, :2]
                np.testing.assert_allclose(policy.act(obs.astype(np.float32)), expected, atol=1e-4)
        follower = lead_lag(BARS, seed=0)
        control_cfg = load_config("ppo", overrides=(*SMALL, "env.levels=[-1.0, 0.0, 1.0]"))
        control = train(follower.bars[1], "ppo", tmp_path / "control", TIMESTEPS, 0, config=control_cfg)
    print("portfolio (seed, sharpe, rule sharpe, return):", figures, "control test:", control.metrics["test"]["sharpe"])
    assert statistics.median(sharpes) >= 0.8 * statistics.median(rules)
    assert control.metrics["test"]["sharpe"] < 0.5 * statistics.median(sharpes)


DQN_TIMESTEPS = 6_000
DQN_SMALL = (
    'features.time="none"',
    "model.fcnet_hiddens=[32]",
    "env.episode_len=500",
    "training.training_intensity=4",
    "training.epsilon_timesteps=3000",
    "training.num_steps_sampled_before_learning_starts=500",
)


@pytest.mark.slow
def test_dqn_portfolio_beats_every_baseline_with_a_joint_discrete_action(tmp_path: Path) -> None:
    """DQN over the joint action (3 levels per market, 9 actions) learns to trade the follower on the
    leader's last move: out of sample, after fees, it beats every baseline on Sharpe and return."""
    config = load_config("dqn", overrides=DQN_SMALL)
    synth = lead_lag(BARS, seed=0)
    with ray_session(num_cpus=2):
        result = train_portfolio(synth.bars, synth.markets, "dqn", tmp_path / "dqn", DQN_TIMESTEPS, 0, config=config)
    test = result.metrics["test"]
    figures = {name: (round(b["sharpe"], 2), round(b["total_return"], 4)) for name, b in test["baselines"].items()}
    print("dqn test (sharpe, return):", (round(test["sharpe"], 2), round(test["total_return"], 4)), figures)
    policy = load_portfolio_policy(tmp_path / "dqn", None)
    assert not policy.config.continuous and policy.net.streams  # a joint Discrete action over both markets
    assert test["trades"] > 0
    for name, base in test["baselines"].items():
        assert test["sharpe"] > base["sharpe"], f"{name} {base['sharpe']:.2f} >= {test['sharpe']:.2f}"
        assert test["total_return"] > base["total_return"], f"{name} returns more"
