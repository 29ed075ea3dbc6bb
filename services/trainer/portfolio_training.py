"""RLlib training of one portfolio policy over N markets (PPO/APPO: Box weights; DQN: joint Discrete).

The same config files as single-market training (`configs/<algo>.toml`), plus an optional
`[portfolio]` section: `spot_margin`, `borrow_rate_annual`, `funding_rate_8h`, `lags`, and `lots`
(per market `"exchange:BASE/QUOTE" = {step, min_qty, min_notional}`, `shared.rl.lots`). The
checkpoint directory gets `tradewind.json` with `markets` (action order) and everything
`shared.rl.portfolio.PortfolioPolicy` needs to rebuild observations online, and `actor.npz`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.trainer.cluster import asking_for, runner_nodes, spread_if_several_nodes
from services.trainer.errors import TrainingError
from services.trainer.portfolio_env import PortfolioEnv
from services.trainer.portfolio_eval import evaluate
from services.trainer.splits import Split
from services.trainer.training import (
    TrainResult,
    build_algorithm_config,
    cost_model_from,
    feature_options,
    load_config,
    ray_session,
)
from shared.rl.bars import Bars
from shared.rl.features import WARMUP
from shared.rl.lots import LotRule
from shared.rl.policy import ALGORITHM_DIR, META_FILE
from shared.rl.portfolio import (
    Market,
    PortfolioConfig,
    PortfolioData,
    build_portfolio_data,
    joint_size,
    load_portfolio_policy,
    observation_size,
)
from shared.rl.weights import WEIGHTS_FILE, encode_weights, numpy_net, sha256_bytes


class RLlibPortfolioEnv(PortfolioEnv):
    """`PortfolioEnv` built from RLlib's env_config dict (keys `data`, `config`)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config["data"], config["config"])


def portfolio_config_from(config: dict[str, Any], algo: str) -> PortfolioConfig:
    env = config.get("env", {})
    extra = dict(config.get("portfolio", {}))
    try:
        if "lags" in extra:
            extra["lags"] = tuple(int(x) for x in extra["lags"])
        if "lots" in extra:  # "exchange:BASE/QUOTE" = {step, min_qty, min_notional}
            extra["lots"] = {str(k): LotRule.from_dict(v) for k, v in dict(extra["lots"]).items()}
        return PortfolioConfig(
            levels=tuple(float(x) for x in env.get("levels", (-1.0, 0.0, 1.0))),
            continuous=algo != "dqn",
            episode_len=int(env.get("episode_len", 1024)),
            reward_scale=float(env.get("reward_scale", 100.0)),
            cost=cost_model_from(config),
            **extra,
        )
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"[portfolio] section: {exc}") from exc


def portfolio_data(
    bars: list[Bars],
    markets: list[Market],
    config: dict[str, Any],
    algo: str,
    funding: Mapping[Market, NDArray[np.float64]] | None = None,
) -> PortfolioData:
    """The portfolio features and prices; `funding`: recorded per-bar funding of some perpetuals."""
    pcfg = portfolio_config_from(config, algo)
    try:
        return build_portfolio_data(
            bars,
            markets,
            time_features=feature_options(config)["time_features"],
            lags=pcfg.lags,
            funding_rate_8h=pcfg.funding_rate_8h,
            funding=funding,
        )
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc


def export_portfolio_weights(out: Path, module: Any, meta: dict[str, Any], data: PortfolioData) -> str:
    """Write `actor.npz` for the portfolio policy from its RLModule; return its sha256."""
    n = data.n_markets
    pcfg = PortfolioConfig.from_dict(meta["env"])
    action_space: dict[str, Any] = (
        {"type": "box", "shape": [n], "low": -1.0, "high": 1.0}
        if pcfg.continuous
        else {"type": "discrete", "n": joint_size(n, pcfg), "levels": list(pcfg.levels), "markets": n}
    )
    blob = encode_weights(numpy_net(module), meta, observation_size(data), action_space)
    tmp = out / f".{WEIGHTS_FILE}.tmp"
    tmp.write_bytes(blob)
    tmp.replace(out / WEIGHTS_FILE)
    return sha256_bytes(blob)


def train_portfolio(
    bars: list[Bars],
    markets: list[Market],
    algo: str,
    out_dir: str | Path,
    timesteps: int = 50_000,
    seed: int = 0,
    gpus: float = 0.0,
    config: dict[str, Any] | None = None,
    data_label: str = "",
    progress: Callable[[int, int], None] | None = None,
    funding: Mapping[Market, NDArray[np.float64]] | None = None,
    funding_sources: Mapping[str, str] | None = None,
    bar_clock: str = "exchange",
    env_runners: int | None = None,
) -> TrainResult:
    """Train one policy over all `markets` on the training split; save, export, evaluate on the test split.

    `funding`: recorded per-bar funding fractions for some perpetuals (`market_dir.load_market_funding`);
    `funding_sources` (market label -> where its funding came from) goes into the metrics as `funding`;
    `bar_clock` (recorded for the executor): the clock the bars were timed by. On a Ray cluster of several
    nodes the env runners (`env_runners`, default one per node) are spread over the nodes, as for one market.
    """
    config = asking_for(config or load_config(algo), env_runners)
    with ray_session():
        kwargs = {"bars": bars, "markets": markets, "algo": algo, "timesteps": timesteps, "seed": seed, "gpus": gpus}
        kwargs.update(config=config, data_label=data_label, funding=funding, funding_sources=funding_sources)
        kwargs.update(bar_clock=bar_clock)
        spread = spread_if_several_nodes(train_portfolio, kwargs, Path(out_dir), env_runners, progress)
        if spread is not None:
            return TrainResult(Path(out_dir), spread)
        here = (bars, markets, algo, Path(out_dir), timesteps, seed, gpus, config, data_label, progress, funding)
        return _train_here(*here, funding_sources, bar_clock)


def _train_here(
    bars: list[Bars],
    markets: list[Market],
    algo: str,
    out: Path,
    timesteps: int,
    seed: int,
    gpus: float,
    config: dict[str, Any],
    data_label: str,
    progress: Callable[[int, int], None] | None,
    funding: Mapping[Market, NDArray[np.float64]] | None,
    funding_sources: Mapping[str, str] | None,
    bar_clock: str,
) -> TrainResult:
    """The run in this process (inside the caller's Ray session), its env runners where Ray puts them."""
    data = portfolio_data(bars, markets, config, algo, funding)
    split_cfg = config.get("split", {})
    split = Split.by_fractions(len(data), float(split_cfg.get("train", 0.6)), float(split_cfg.get("validation", 0.2)))
    pcfg = portfolio_config_from(config, algo)
    if not pcfg.continuous:
        joint_size(len(markets), pcfg)  # N <= 4 for a joint discrete action
    env_cfg = {"data": data, "config": pcfg.with_range(0, split.train_end)}
    algo_config = build_algorithm_config(algo, config, None, env_cfg, seed, gpus, env=RLlibPortfolioEnv)
    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "algo": algo,
        "seed": seed,
        "data": data_label,
        "markets": [{"exchange": ex, "symbol": sym} for ex, sym in markets],
        "bar_seconds": data.bar_seconds,
        "bar_clock": bar_clock,
        "feature_names": list(data.names),
        "features": feature_options(config),
        "env": pcfg.to_dict(),
        "warmup_bars": WARMUP + max(pcfg.lags, default=0) + 1,
        "config": config,
        "split": asdict(split),
        "train_from_ns": int(data.ts[0]),
        "train_to_ns": int(data.ts[split.train_end - 1]),
        "validation_to_ns": int(data.ts[split.validation_end - 1]),
    }
    started = time.perf_counter()
    sampled, iterations = 0, 0
    last: dict[str, Any] = {}
    algorithm = algo_config.build_algo()
    try:
        while sampled < timesteps:
            last = algorithm.train()
            iterations += 1
            sampled = int(last.get("env_runners", {}).get("num_env_steps_sampled_lifetime", sampled))
            if progress is not None:
                progress(min(sampled, timesteps), timesteps)
        nodes = runner_nodes(algorithm)
        algorithm.save_to_path(str((out / ALGORITHM_DIR).resolve()))
        meta["timesteps"] = sampled
        (out / META_FILE).write_text(json.dumps(meta, indent=2))
        meta["weights_sha256"] = export_portfolio_weights(out, algorithm.get_module(), meta, data)
    finally:
        algorithm.stop()
    train_s = time.perf_counter() - started
    policy = load_portfolio_policy(out, None)
    metrics: dict[str, Any] = {
        "algo": algo,
        "checkpoint": str(out),
        "markets": [f"{ex}:{sym}" for ex, sym in markets],
        "timesteps": sampled,
        "iterations": iterations,
        "train_s": round(train_s, 2),
        "episode_return_mean": last.get("env_runners", {}).get("episode_return_mean"),
        "ray_nodes": len(nodes),  # distinct nodes whose env runners sampled
        "funding": dict(funding_sources or {}),
        "validation": evaluate(policy, data, split.train_end, split.validation_end, pcfg),
        "test": evaluate(policy, data, split.validation_end, len(data) - 1, pcfg),
    }
    meta["metrics"] = metrics
    (out / META_FILE).write_text(json.dumps(meta, indent=2, default=_plain))
    return TrainResult(out, metrics)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")
