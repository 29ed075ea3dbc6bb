"""Policies as data: the weights-only actor acts as the RLModule does, and loads only when trusted."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.executor.strategies.rl import RLStrategy
from services.trainer.env import TradingEnv
from services.trainer.synth import make_market
from services.trainer.training import build_algorithm_config, env_config_from, feature_options, load_config
from shared.rl.env_config import env_config_to_dict
from shared.rl.features import compute_features
from shared.rl.policy import PolicyError
from shared.rl.weights import (
    WEIGHTS_FILE,
    decode_weights,
    encode_weights,
    load_weights_policy,
    numpy_net,
    sha256_bytes,
    with_sha,
)
from shared.sections.executor import ExecutorSettings


def module_actions(module: Any, obs: np.ndarray) -> np.ndarray:
    """What the RLModule itself decides (forward_inference): its actions, or the argmax / mean of its logits."""
    import torch

    with torch.inference_mode():
        out = module.forward_inference({"obs": torch.from_numpy(obs)})
    if "actions" in out:
        return out["actions"].numpy().astype(np.float64)
    logits = out["action_dist_inputs"].numpy()
    return logits.argmax(axis=-1).astype(np.float64)


def built(algo: str, *overrides: str) -> tuple[Any, dict[str, Any]]:
    """A freshly initialised RLModule of `algo` (seeded random weights) and the metadata `tradewind train` writes."""
    import torch

    torch.manual_seed(7)  # an unseeded dueling head can pick one action everywhere (seen in CI runs)
    config = load_config(algo, None, overrides)
    market = compute_features(make_market("regime_momentum", 600, seed=5).bars, **feature_options(config))
    env_config = env_config_from(config, 0, 400)
    algo_config = build_algorithm_config(algo, config, market, env_config, 0, 0.0)
    env = TradingEnv(market, env_config)
    spec = algo_config.get_default_rl_module_spec()
    spec.observation_space, spec.action_space = env.observation_space, env.action_space
    spec.model_config = algo_config.model_config
    meta = {
        "algo": algo,
        "feature_names": list(market.names),
        "features": feature_options(config),
        "env": env_config_to_dict(env_config),
        "bar_seconds": market.bar_seconds,
    }
    return spec.build(), meta


@pytest.mark.parametrize(
    ("algo", "overrides", "kind"),
    [
        ("ppo", (), "mlp"),
        ("appo", (), "mlp"),
        ("dqn", (), "dueling"),  # the shipped DQN config: dueling heads
        ("dqn", ("training.dueling=false",), "q"),
    ],
)
def test_exported_weights_act_as_the_rl_module(algo: str, overrides: tuple[str, ...], kind: str) -> None:
    module, meta = built(algo, *overrides)
    module.eval()
    net = numpy_net(module)
    assert net.kind == kind
    n_obs = len(meta["feature_names"]) + 2
    data = encode_weights(net, meta, n_obs, {"type": "discrete", "n": 3})
    policy = decode_weights(data, Path("mem"), sha256_bytes(data))
    obs = np.random.default_rng(11).normal(size=(5_000, n_obs)).astype(np.float32) * 3
    expected = module_actions(module, obs)
    assert len(set(expected.tolist())) > 1  # the check has teeth: several actions are chosen
    np.testing.assert_array_equal(policy.act(obs), expected)
    with np.load(io.BytesIO(data), allow_pickle=False) as z:  # plain arrays and a JSON header, nothing pickled
        assert all(z[name].dtype != object for name in z.files)
        assert json.loads(bytes(z["header"]))["obs_size"] == n_obs


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("policies")
    module, meta = built("ppo")
    data = encode_weights(numpy_net(module), meta, len(meta["feature_names"]) + 2, {"type": "discrete", "n": 3})
    (root / "p1").mkdir()
    (root / "p1" / WEIGHTS_FILE).write_bytes(data)
    return root, sha256_bytes(data)


def test_load_refuses_outside_the_root_a_changed_file_and_pickles(exported: tuple[Path, str], tmp_path: Path) -> None:
    root, sha = exported
    good = load_weights_policy(with_sha(str(root / "p1"), sha), root, require_sha=True)
    assert good.sha256 == sha
    with pytest.raises(PolicyError, match="outside the policy directory"):
        load_weights_policy(str(root / "p1" / ".." / ".." / "elsewhere"), root)
    with pytest.raises(PolicyError, match="no sha256 recorded"):
        load_weights_policy(str(root / "p1"), root, require_sha=True)
    with pytest.raises(PolicyError, match="differs from the registry"):
        load_weights_policy(with_sha(str(root / "p1"), "0" * 64), root)
    pickled = root / "p2"
    pickled.mkdir()
    np.savez(pickled / WEIGHTS_FILE, header=np.array([{"kind": "mlp"}], dtype=object))
    with pytest.raises(PolicyError, match="allow_pickle=False"):
        load_weights_policy(str(pickled), root)


async def test_executor_trades_only_registered_weights(
    exported: tuple[Path, str], caplog: pytest.LogCaptureFixture
) -> None:
    root, sha = exported
    strategy = RLStrategy(ExecutorSettings(policy_dir=str(root), rl_bar_seconds=1.0), run_id="t")
    caplog.set_level(logging.ERROR, logger="services.executor.strategies.rl")
    assert not await strategy.load(with_sha(str(root / "p1"), "f" * 64), "bad", "binance", "BTC/USDT")
    assert strategy.active is None and "differs from the registry" in caplog.text  # refused, logged, not traded
    assert not await strategy.load(str(root / "p1"), "unregistered", "binance", "BTC/USDT")
    assert strategy.active is None
    assert await strategy.load(with_sha(str(root / "p1"), sha), "good", "binance", "BTC/USDT")
    assert strategy.active is not None and strategy.active.policy_id == "good"
