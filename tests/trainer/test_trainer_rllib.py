"""Tiny real RLlib runs: PPO and DQN train, checkpoint, and the checkpoint backtests without the Algorithm."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from services.trainer.cli import backtest, train
from services.trainer.env import TradingEnv
from services.trainer.synth import make_market, write_csv
from shared.rl.features import compute_features
from shared.rl.policy import CheckpointPolicy
from shared.rl.weights import load_weights_policy
from tests.trainer.test_policy_weights import module_actions

pytestmark = pytest.mark.slow

TINY = {
    "ppo": (
        "--set",
        "training.train_batch_size_per_learner=256",
        "--set",
        "training.minibatch_size=64",
        "--set",
        "training.num_epochs=2",
    ),
    "dqn": ("--set", "training.num_steps_sampled_before_learning_starts=64", "--set", "training.training_intensity=2"),
}


@pytest.fixture(scope="module")
def ray_up() -> Iterator[None]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def market_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "regime.csv"
    write_csv(make_market("regime_momentum", 2_000, seed=7).bars, str(path))
    return path


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_train_checkpoint_backtest(algo: str, ray_up: None, market_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / algo
    args = ["--algo", algo, "--data", str(market_csv), "--timesteps", "300", "--seed", "3", "--out", str(out)]
    result = CliRunner().invoke(train, [*args, *TINY[algo]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["algo"] == algo and line["timesteps"] >= 300
    assert {"validation", "test"} <= line.keys()
    assert (out / "tradewind.json").is_file()

    policy = CheckpointPolicy.load(out)
    market = compute_features(make_market("regime_momentum", 2_000, seed=7).bars)
    # the batched (bar x position) table walk equals stepping the env with one forward per bar
    start, stop = 1_700, 1_900
    batched = policy.positions(market, start, stop)
    env = TradingEnv(market, policy.env_config.with_range(0, None))
    obs, _ = env.reset(options={"start": start})
    stepped = []
    for _ in range(stop - start):
        action = int(policy.act(obs[None, :])[0])
        stepped.append(env.target_position(action))
        obs, *_ = env.step(action)
    np.testing.assert_array_equal(batched, stepped)

    # the weights-only export acts as the RLModule does (DQN: argmax over its dueling Q-values)
    weights = load_weights_policy(out, out.parent)
    obs = np.random.default_rng(5).normal(size=(4_000, len(policy.meta["feature_names"]) + 2)).astype(np.float32)
    np.testing.assert_array_equal(weights.act(obs), module_actions(policy.module, obs))
    np.testing.assert_array_equal(weights.positions(market, start, stop), batched)

    root = {"TRADEWIND_TRAINER__POLICY_DIR": str(out.parent)}  # policies load from under the policy directory
    report = CliRunner().invoke(backtest, ["--data", str(market_csv), "--policy", str(out), "--json"], env=root)
    assert report.exit_code == 0, report.output
    metrics = json.loads(report.stdout.strip().splitlines()[-1])
    for key in ("total_return", "sharpe", "sortino", "max_drawdown", "turnover", "trades", "fees", "deflated_sharpe"):
        assert key in metrics and key in metrics["baselines"]["momentum"]
    meta = json.loads((out / "tradewind.json").read_text())
    # only bars after the training data (and after validation, when validation chose the weights)
    first = meta["split"]["validation_end" if "selection" in meta else "train_end"]
    assert metrics["bars"] == 2_000 - first - 1


def test_walk_forward_retrains_per_fold(ray_up: None, market_csv: Path, tmp_path: Path) -> None:
    args = ["--algo", "ppo", "--data", str(market_csv), "--timesteps", "256", "--folds", "2", "--out", str(tmp_path)]
    result = CliRunner().invoke(train, [*args, *TINY["ppo"]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(summary["folds"]) == 2 and set(summary["baselines"]) == {"buy_and_hold", "flat", "momentum"}
    for k, fold in enumerate(summary["folds"]):
        meta = json.loads((tmp_path / f"fold-{k}" / "tradewind.json").read_text())
        assert fold["from_ts"] > meta["train_to_ns"]  # each fold is judged after its own training data
    first, second = summary["folds"]
    assert first["to_ts"] <= second["from_ts"]
    assert summary["bars"] == 2_000 // 2 - 2  # the second half, less each fold's last bar
    chained = (1 + first["total_return"]) * (1 + second["total_return"]) - 1
    assert summary["total_return"] == pytest.approx(chained, rel=1e-9, abs=1e-12)


def test_validation_selection_keeps_the_best_weights_and_moves_the_test_start(
    ray_up: None, market_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "dqn"
    # a DQN iteration samples at least 1,000 steps
    args = ["--algo", "dqn", "--data", str(market_csv), "--timesteps", "3000", "--seed", "3", "--out", str(out)]
    selection = ("--set", "selection.every_steps=1000")
    result = CliRunner().invoke(train, [*args, *TINY["dqn"], *selection], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    meta = json.loads((out / "tradewind.json").read_text())
    history = meta["selection"]["history"]
    assert len(history) >= 3 and history[-1][0] >= 3000
    best = max(sharpe for _, sharpe in history)
    assert meta["selection"]["best_validation_sharpe"] == pytest.approx(best, abs=1e-4)
    # the saved checkpoint holds the chosen weights, not the last ones
    assert line["validation"]["sharpe"] == pytest.approx(best, abs=1e-3)

    root = {"TRADEWIND_TRAINER__POLICY_DIR": str(out.parent)}  # policies load from under the policy directory
    report = CliRunner().invoke(backtest, ["--data", str(market_csv), "--policy", str(out), "--json"], env=root)
    assert report.exit_code == 0, report.output
    metrics = json.loads(report.stdout.strip().splitlines()[-1])
    assert metrics["bars"] == 2_000 - meta["split"]["validation_end"] - 1  # validation chose the weights: not a test
