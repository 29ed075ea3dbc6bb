"""Learning is proven on a synthetic market with known structure: the trained policy must reach a
good share of the oracle's out-of-sample Sharpe after costs (full budget: see README, >= 80%)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.trainer.backtest import metrics, simulate
from services.trainer.synth import make_market
from services.trainer.training import cost_model_from, load_config, train
from shared.rl.features import compute_features

pytestmark = pytest.mark.slow

BARS = 8_000
SHARE_OF_ORACLE = 0.3  # at these small CPU budgets (~15 s PPO, ~60 s DQN); see REAL_DATA_REPORT.md for full runs


@pytest.fixture(scope="module")
def ray_up() -> Iterator[None]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.mark.parametrize(("algo", "timesteps"), [("ppo", 30_000), ("dqn", 25_000)])
def test_learns_mean_reversion(algo: str, timesteps: int, ray_up: None, tmp_path: Path) -> None:
    market = make_market("mean_reverting", BARS, seed=1)
    config = load_config(algo, overrides=("features.time=none",))  # a synthetic market has no calendar
    result = train(market.bars, algo, tmp_path / algo, timesteps=timesteps, seed=1, config=config)
    test = result.metrics["test"]
    start = int(BARS * 0.8)
    features = compute_features(market.bars)
    oracle = metrics(simulate(features, market.oracle_positions[start : BARS - 1], start, cost_model_from(config)))
    assert oracle["sharpe"] > 10  # the market really is exploitable after costs
    assert test["sharpe"] >= SHARE_OF_ORACLE * oracle["sharpe"], (test, oracle)
    assert test["total_return"] > 0
    for name, baseline in test["baselines"].items():
        assert test["sharpe"] > baseline["sharpe"], name
