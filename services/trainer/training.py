"""RLlib training (new API stack) of DQN, PPO and APPO on the trading env.

Configuration lives in `configs/<algo>.toml`; a user file and `--set section.key=value`
override it. Ray is imported here only, so the env, the backtester and the executor's
inference stay Ray-free. A run starts its own local Ray unless `RAY_ADDRESS` (or `--address`)
names a cluster, which must answer within seconds.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.trainer.backtest import metrics
from services.trainer.errors import TrainingError
from services.trainer.evaluation import evaluate_split, run_backtest
from services.trainer.gym_vec_env import rllib_env
from services.trainer.splits import Split
from shared.rl.bars import Bars
from shared.rl.costs import CostModel, FeeTier
from shared.rl.env_config import EnvConfig, env_config_to_dict
from shared.rl.features import MarketData, compute_features
from shared.rl.policy import ALGORITHM_DIR, META_FILE, MODULE_PATH, CheckpointPolicy
from shared.rl.weights import export_weights

ALGOS = ("dqn", "ppo", "appo")
CONFIG_DIR = Path(__file__).parent / "configs"
RLLIB_ENV = "tradewind-trading"  # the name `rllib_env` is registered under with Ray


def load_config(algo: str, path: str | Path | None = None, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """The algorithm's default config, updated by a user TOML file, then by `section.key=value` overrides."""
    if algo not in ALGOS:
        raise TrainingError(f"--algo: expected one of {', '.join(ALGOS)}, found {algo!r}")
    config = tomllib.loads((CONFIG_DIR / f"{algo}.toml").read_text())
    if path is not None:
        try:
            user = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise TrainingError(f"--config {path}: expected a readable TOML file: {exc}") from exc
        for section, values in user.items():
            if not isinstance(values, dict):
                raise TrainingError(f"--config {path}: expected [section] tables, found top-level key {section!r}")
            config.setdefault(section, {}).update(values)
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise TrainingError(f"--set {item!r}: expected section.key=value, e.g. training.lr=0.001")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word is a string
        config.setdefault(section, {})[name] = value
    return config


def feature_options(config: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `compute_features` from the `[features]` section."""
    return {"time_features": str(config.get("features", {}).get("time", "day"))}


def cost_model_from(config: dict[str, Any]) -> CostModel:
    cost = config.get("cost", {})
    fee = float(cost.get("taker_fee", 0.001))
    return CostModel(
        tiers=(FeeTier(0.0, float(cost.get("maker_fee", fee)), fee),),
        half_spread=float(cost.get("half_spread", 0.0001)),
        impact=float(cost.get("impact", 0.1)),
        max_impact=float(cost.get("max_impact", 0.005)),
    )


def env_config_from(config: dict[str, Any], start: int = 0, stop: int | None = None) -> EnvConfig:
    env = dict(config.get("env", {}))
    if "levels" in env:
        env["levels"] = tuple(float(x) for x in env["levels"])
    try:
        return EnvConfig(cost=cost_model_from(config), start=start, stop=stop, **env)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"[env] section: {exc}") from exc


class RayUnavailable(TrainingError):
    """The Ray cluster named by `--address` / `RAY_ADDRESS` does not answer."""


RAY_CONNECT_TIMEOUT_S = 5.0
# HTTP/2 client preface and an empty SETTINGS frame: a Ray GCS (a gRPC server) answers with its own SETTINGS.
_H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 0x04


def ray_address(address: str | None = None, environ: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """The Ray cluster a run uses, and which setting chose it: `address` (`--address`), else
    `RAY_ADDRESS`, else "local" — a Ray started for this run. Never, by default, the cluster a
    `ray start` last recorded in /tmp/ray/ray_current_cluster, which may be long gone."""
    if address:
        return address, "--address"
    if environ.get("RAY_ADDRESS"):
        return environ["RAY_ADDRESS"], "RAY_ADDRESS"
    return "local", "default"


def check_ray_address(address: str, source: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Fail within `timeout`, naming the address, unless a gRPC server (a Ray GCS or Ray Client
    server) answers there: Ray itself retries a dead GCS for minutes. "local" needs no check;
    "auto" is left to Ray's discovery."""
    if address in ("local", "auto"):
        return
    host_port = address.split("://", 1)[-1]
    host, sep, port = host_port.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayUnavailable(f"{source}: expected host:port, ray://host:port or local, found {address!r}")
    hint = "without --address and RAY_ADDRESS, training starts a local Ray"
    deadline = time.monotonic() + timeout
    head = b""
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
            sock.sendall(_H2_HELLO)
            while len(head) < 9:  # the server's first frame header
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except OSError as exc:
        raise RayUnavailable(
            f"Ray cluster at {host_port} ({source}) does not answer within {timeout:g} s ({exc}); {hint}"
        ) from None
    if len(head) < 9 or head[3] != _H2_SETTINGS:
        raise RayUnavailable(
            f"Ray cluster at {host_port} ({source}) does not answer as one: no gRPC handshake "
            f"(first bytes {head[:9]!r}); {hint}"
        )


@contextmanager
def ray_session(num_cpus: int | None = None, address: str | None = None) -> Iterator[dict[str, Any]]:
    """Start a quiet local Ray for one training run, or join the cluster at `address` / RAY_ADDRESS.

    Yields where the run goes: `ray_address` (the cluster's GCS) and `ray_nodes` (alive nodes; a
    training's metrics give the nodes its env runners ran on instead).
    A session the caller already opened is used as it is.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray

    started = False
    if not ray.is_initialized():
        target, source = ray_address(address)
        check_ray_address(target, source)
        ray.init(
            address=target,
            num_cpus=num_cpus if target == "local" else None,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=True,
        )
        started = True
    try:
        yield {
            "ray_address": ray.get_runtime_context().gcs_address,
            "ray_nodes": sum(1 for node in ray.nodes() if node.get("Alive")),
        }
    finally:
        if started:  # a session the caller opened (several trainings, tests) stays up
            ray.shutdown()


def build_algorithm_config(
    algo: str,
    config: dict[str, Any],
    market: MarketData | None,
    env_config: Any,
    seed: int,
    gpus: float,
    env: type | None = None,
) -> Any:
    """The RLlib AlgorithmConfig for `algo` on this market (`env`: another env class, e.g. the
    portfolio env, built from `env_config` as it is)."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    training = dict(config.get("training", {}))
    runners = dict(config.get("env_runners", {}))
    if runners.pop("fast_sampler", False):  # array-level sampling (services/trainer/fast_runner.py)
        from services.trainer.fast_runner import FastVecEnvRunner

        runners["env_runner_cls"] = FastVecEnvRunner
    if env is None:  # the runners step `VecTradingEnv` (one numpy call per step of all their envs)
        from ray.tune.registry import register_env

        register_env(RLLIB_ENV, rllib_env)  # RLlib takes a creator function only by a registered name
        runners.setdefault("gym_env_vectorize_mode", "vector_entry_point")
    model = dict(config.get("model", {}))
    if algo == "dqn":
        from ray.rllib.algorithms.dqn import DQNConfig

        base: Any = DQNConfig()
        eps_steps = int(training.pop("epsilon_timesteps", 20_000))
        final_eps = float(training.pop("final_epsilon", 0.02))
        prioritized = bool(training.pop("prioritized_replay", True))
        capacity = int(training.pop("replay_capacity", 50_000))
        buffer: dict[str, Any] = {"type": "PrioritizedEpisodeReplayBuffer" if prioritized else "EpisodeReplayBuffer"}
        buffer["capacity"] = capacity
        if prioritized:
            buffer.update(alpha=0.6, beta=0.4)
        training.update(epsilon=[(0, 1.0), (eps_steps, final_eps)], replay_buffer_config=buffer)
        model.setdefault("head_fcnet_hiddens", [64])
    elif algo == "ppo":
        from ray.rllib.algorithms.ppo import PPOConfig

        base = PPOConfig()
        model.setdefault("vf_share_layers", False)
    else:
        from ray.rllib.algorithms.appo import APPOConfig

        base = APPOConfig()
    # unsquashing a discrete action is the identity, yet costs RLlib a deepcopy and a pass per env
    normalize = env is not None or env_config.continuous
    try:
        return (
            base.environment(
                env or RLLIB_ENV,
                env_config=env_config if env else {"market": market, "env": env_config},
                normalize_actions=normalize,
            )
            .framework("torch")
            .env_runners(**runners)
            .learners(num_learners=0, num_gpus_per_learner=gpus)
            .training(**training)
            .rl_module(model_config=DefaultModelConfig(**model))
            .debugging(seed=seed, log_level="ERROR")
        )
    except TypeError as exc:
        raise TrainingError(f"{algo} config: {exc}") from exc


@dataclass
class TrainResult:
    out_dir: Path
    metrics: dict[str, Any]


def train(
    bars: Bars,
    algo: str,
    out_dir: str | Path,
    timesteps: int = 50_000,
    seed: int = 0,
    gpus: float = 0.0,
    config: dict[str, Any] | None = None,
    data_label: str = "",
    progress: Callable[[int, int], None] | None = None,
    init_from: str | Path | None = None,
    bar_clock: str = "exchange",
    env_runners: int | None = None,
) -> TrainResult:
    """Train `algo` on the training split of `bars`, save the checkpoint and evaluate out of sample.

    `init_from` (a checkpoint dir of the same algorithm and features) fine-tunes its weights
    instead of starting from scratch. `bar_clock` (exchange or receive time) is recorded with
    the bar length so a live consumer of the policy builds the same bars. On a Ray cluster of
    several nodes the env runners (`env_runners`, default one per node) are spread over the nodes.
    """
    from services.trainer.cluster import asking_for, spread_if_several_nodes

    config = asking_for(config or load_config(algo), env_runners)
    with ray_session():
        kwargs = {"bars": bars, "algo": algo, "timesteps": timesteps, "seed": seed, "gpus": gpus, "config": config}
        kwargs.update(data_label=data_label, init_from=init_from, bar_clock=bar_clock)
        spread = spread_if_several_nodes(train, kwargs, Path(out_dir), env_runners, progress)
        if spread is not None:
            return TrainResult(Path(out_dir), spread)
        return _train_here(
            bars, algo, out_dir, timesteps, seed, gpus, config, data_label, progress, init_from, bar_clock
        )


def _train_here(
    bars: Bars,
    algo: str,
    out_dir: str | Path,
    timesteps: int,
    seed: int,
    gpus: float,
    config: dict[str, Any],
    data_label: str,
    progress: Callable[[int, int], None] | None,
    init_from: str | Path | None,
    bar_clock: str,
) -> TrainResult:
    """The run in this process, its env runners where Ray puts them (inside a placement group: its bundles)."""
    from services.trainer.cluster import runner_nodes

    split_cfg = config.get("split", {})
    features = feature_options(config)
    market = compute_features(bars, **features)
    split = Split.by_fractions(len(market), float(split_cfg.get("train", 0.6)), float(split_cfg.get("validation", 0.2)))
    env_config = env_config_from(config, 0, split.train_end)
    algo_config = build_algorithm_config(algo, config, market, env_config, seed, gpus)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "algo": algo,
        "seed": seed,
        "data": data_label,
        "bar_seconds": market.bar_seconds,
        "bar_clock": bar_clock,
        "feature_names": list(market.names),
        "features": features,
        "env": env_config_to_dict(env_config),
        "config": config,
        "split": asdict(split),
        "train_from_ns": int(market.ts[0]),
        "train_to_ns": int(market.ts[split.train_end - 1]),
        "validation_to_ns": int(market.ts[split.validation_end - 1]),
        "init_from": None if init_from is None else str(init_from),
    }
    select_every = int(config.get("selection", {}).get("every_steps", 0))
    selection = ValidationSelection(meta, market, split, env_config) if select_every > 0 else None
    started = time.perf_counter()
    sampled, iterations = 0, 0
    last: dict[str, Any] = {}
    algorithm = algo_config.build_algo()
    try:
        nodes = runner_nodes(algorithm)
        if init_from is not None:
            _load_weights(algorithm, Path(init_from))
        next_check = select_every
        while sampled < timesteps:
            last = algorithm.train()
            iterations += 1
            sampled = int(last.get("env_runners", {}).get("num_env_steps_sampled_lifetime", sampled))
            if progress is not None:
                progress(min(sampled, timesteps), timesteps)
            if selection is not None and (sampled >= next_check or sampled >= timesteps):
                selection.check(algorithm, sampled)
                next_check = sampled + select_every
        if selection is not None:
            selection.restore_best(algorithm)
        algorithm.save_to_path(str((out / ALGORITHM_DIR).resolve()))
    finally:
        algorithm.stop()
    train_s = time.perf_counter() - started
    meta["timesteps"] = sampled
    if selection is not None:
        meta["selection"] = selection.summary()
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    meta["weights_sha256"] = export_weights(out)  # what the executor and backtest load: data, not a pickle
    runners = last.get("env_runners", {})
    metrics: dict[str, Any] = {
        "algo": algo,
        "checkpoint": str(out),
        "timesteps": sampled,
        "iterations": iterations,
        "train_s": round(train_s, 2),
        "env_steps_per_s": round(sampled / train_s, 1),
        "episode_return_mean": runners.get("episode_return_mean"),
        "ray_nodes": len(nodes),  # distinct nodes whose env runners sampled
    }
    metrics.update(evaluate_split(out, market, split))
    meta["metrics"] = metrics
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return TrainResult(out, metrics)


class ValidationSelection:
    """Keep the weights that scored best on the validation split (early stopping for value-based
    learners, whose greedy policy can collapse late in training). The test split stays unseen:
    the checkpoint records the selection, and backtests then count only bars after validation."""

    def __init__(self, meta: dict[str, Any], market: MarketData, split: Split, env_config: EnvConfig) -> None:
        self.meta = meta
        self.market = market
        self.split = split
        self.env_config = env_config
        self.history: list[tuple[int, float]] = []
        self.best: tuple[float, int, Any] | None = None

    def check(self, algorithm: Any, sampled: int) -> None:
        policy = CheckpointPolicy(algorithm.get_module(), self.meta, Path("."))  # the sampler's synced copy
        result = run_backtest(policy, self.market, self.split.train_end, self.split.validation_end, self.env_config)
        sharpe = float(metrics(result)["sharpe"])
        self.history.append((sampled, round(sharpe, 4)))
        if self.best is None or sharpe > self.best[0]:
            self.best = (sharpe, sampled, copy.deepcopy(algorithm.learner_group.get_weights()))

    def restore_best(self, algorithm: Any) -> None:
        if self.best is not None:
            algorithm.learner_group.set_weights(self.best[2])

    def summary(self) -> dict[str, Any]:
        return {
            "metric": "validation sharpe",
            "best_at_steps": None if self.best is None else self.best[1],
            "best_validation_sharpe": None if self.best is None else round(self.best[0], 4),
            "history": self.history,
        }


def _load_weights(algorithm: Any, checkpoint: Path) -> None:
    """Start from a previous checkpoint's network weights (fine-tuning), then push them to the samplers."""
    component = "/".join(MODULE_PATH)
    module_dir = checkpoint / ALGORITHM_DIR / component
    if not module_dir.is_dir():
        raise TrainingError(f"init_from {checkpoint}: expected a `tradewind train --out` directory with {module_dir}")
    algorithm.restore_from_path(str(module_dir.resolve()), component=component)
    algorithm.env_runner_group.sync_weights(from_worker_or_learner_group=algorithm.learner_group, inference_only=True)
