"""Trainer benchmarks: env steps/s (single, vectorized), RLlib sampling and learner updates, and a
one-year 1-minute backtest beside vectorbt on the same bars with the same signals."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.trainer.backtest import metrics, simulate
from services.trainer.data import load_bars
from services.trainer.env import TradingEnv
from services.trainer.vec_env import VecTradingEnv
from shared.rl.bars import NS_PER_S, Bars
from shared.rl.costs import CostModel, FeeTier
from shared.rl.env_config import EnvConfig
from shared.rl.features import compute_features

REAL_CANDLES = Path(__file__).parent.parent / "tests" / "data" / "trainer" / "btc-perp-20211231_1m_head3000.csv.gz"
YEAR_1M = 525_600
FEE = 0.001


def year_of_minute_bars(seed: int = 0) -> Bars:
    """525,600 one-minute bars whose returns and volumes are resampled from real BTC minute bars."""
    real = load_bars(REAL_CANDLES)
    rng = np.random.default_rng(seed)
    log_ret = np.diff(np.log(real.close))
    pick = rng.integers(0, len(log_ret), YEAR_1M)
    close = real.close[0] * np.exp(np.cumsum(log_ret[pick]))
    open_ = np.r_[real.close[0], close[:-1]]
    ts = real.ts[0] + np.arange(YEAR_1M, dtype=np.int64) * 60 * NS_PER_S
    volume = real.volume[1:][pick]
    return Bars(
        ts=ts, open=open_, high=np.maximum(open_, close), low=np.minimum(open_, close), close=close, volume=volume
    )


def bench_envs(market: Any) -> dict[str, float]:
    cfg = EnvConfig()
    env = TradingEnv(market, cfg)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 3, 200_000).tolist()
    started = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    single = len(actions) / (time.perf_counter() - started)
    vec = VecTradingEnv(market, cfg, num_envs=4096, seed=0)
    vec.reset()
    batch = np.random.default_rng(1).integers(0, 3, (300, 4096))
    started = time.perf_counter()
    for a in batch:
        vec.step(a)
    vectorized = batch.size / (time.perf_counter() - started)
    return {"env_steps_per_s": round(single), "env_vec_steps_per_s": round(vectorized), "env_vec_num_envs": 4096}


# envs per env runner while sampling is timed: RLlib's runner pays a fixed cost per vector step
# (module forward, connectors), spread over this many envs of the one numpy `VecTradingEnv`
RLLIB_BENCH_ENVS = 256


def bench_rllib(bars: Bars, work_dir: Path) -> tuple[dict[str, float], Path]:
    """PPO and DQN: env steps sampled/s by the local env runner (through the vector env; PPO's also by
    each of RLlib's runner and the fast one), PPO's learner minibatch updates/s; returns a checkpoint."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from services.trainer.training import load_config, ray_session, train

    out = work_dir / "ppo"
    market = compute_features(bars)
    with ray_session(num_cpus=2):
        train(bars, "ppo", out, timesteps=4_096, seed=0)  # warm: imports, first compile of the module
        config = load_config("ppo")
        algo = _sampling_algo("ppo", config, market)
        try:
            ppo_rate = _sampling_rate(algo)
            started = time.perf_counter()
            algo.train()  # the config's train batch, sampled over the bench's envs
            iteration_s = time.perf_counter() - started
            device = learner_device(algo)
        finally:
            algo.stop()
        configured = bool(config["env_runners"].get("fast_sampler", False))  # the runner training uses
        algo = _sampling_algo("ppo", load_config("ppo"), market, fast_sampler=not configured)
        try:
            by_runner = {configured: ppo_rate, not configured: _sampling_rate(algo)}
        finally:
            algo.stop()
        algo = _sampling_algo("dqn", load_config("dqn"), market)
        try:
            dqn_rate = _sampling_rate(algo)
        finally:
            algo.stop()
    t = config["training"]
    updates = t["num_epochs"] * -(-t["train_batch_size_per_learner"] // t["minibatch_size"])
    learn_s = max(iteration_s - t["train_batch_size_per_learner"] / ppo_rate, 1e-9)
    return {
        "rllib_env_steps_per_s": round(ppo_rate),
        "rllib_env_steps_per_s_base_runner": round(by_runner[False]),  # RLlib's SingleAgentEnvRunner
        "rllib_env_steps_per_s_fast_runner": round(by_runner[True]),  # FastVecEnvRunner (fast_sampler)
        "rllib_dqn_env_steps_per_s": round(dqn_rate),
        "rllib_num_envs_per_env_runner": RLLIB_BENCH_ENVS,
        "rllib_learner_updates_per_s": round(updates / learn_s, 1),
        "rllib_ppo_iteration_s": round(iteration_s, 2),
        "rllib_device": device,
    }, out


def _sampling_algo(algo_name: str, config: dict[str, Any], market: Any, fast_sampler: bool | None = None) -> Any:
    """The algorithm over the bench's envs; `fast_sampler` overrides the config's env runner choice."""
    from services.trainer.training import build_algorithm_config, env_config_from

    config["env_runners"]["num_envs_per_env_runner"] = RLLIB_BENCH_ENVS
    if fast_sampler is not None:
        config["env_runners"]["fast_sampler"] = fast_sampler
    env_config = env_config_from(config, 0, len(market) // 2)
    return build_algorithm_config(algo_name, config, market, env_config, 0, 0.0).build_algo()


def _sampling_rate(algo: Any) -> float:
    """Env steps/s of the local env runner, exploring as in training, after a warm-up sample."""
    algo.env_runner.sample(num_timesteps=4 * RLLIB_BENCH_ENVS)
    started = time.perf_counter()
    sampled = algo.env_runner.sample(num_timesteps=64 * RLLIB_BENCH_ENVS)
    return sum(len(e) for e in sampled) / (time.perf_counter() - started)


def learner_device(algo: Any) -> str:
    """Where the learner's module parameters live, read from the learner itself (``cpu``, ``cuda:0``)."""
    devices = algo.learner_group.foreach_learner(
        lambda learner: sorted({str(p.device) for m in learner.module.values() for p in m.parameters()})
    )
    found: set[str] = set()
    for result in devices:  # a local learner answers plainly, remote ones as call results
        found.update(result.get() if hasattr(result, "get") else result)
    return ",".join(sorted(found))


def daily_momentum(close: np.ndarray) -> np.ndarray:
    """Long after a rise over the last day, short after a fall: the signal both engines trade."""
    past = np.r_[np.full(1_440, close[0]), close[:-1_440]]
    return np.sign(close - past)


def bench_backtests(bars: Bars, checkpoint: Path) -> dict[str, float]:
    from shared.rl.policy import CheckpointPolicy

    cost = CostModel(tiers=(FeeTier(0.0, FEE, FEE),), half_spread=0.0, impact=0.0)
    cfg = EnvConfig(cost=cost)
    policy = CheckpointPolicy.load(checkpoint)
    started = time.perf_counter()
    market = compute_features(bars)
    features_s = time.perf_counter() - started
    positions = policy.positions(market, 1, len(market) - 1, cfg)
    policy_metrics = metrics(simulate(market, positions, 1, cost))
    policy_s = time.perf_counter() - started
    signals = daily_momentum(bars.close)[1:-1]
    started = time.perf_counter()
    ours = metrics(simulate(market, signals, 1, cost))
    signals_s = time.perf_counter() - started
    vbt_s, vbt_cold_s, vbt_return = _vectorbt_momentum(bars, signals)
    return {
        "backtest_1y_1m_s": round(policy_s, 3),
        "backtest_features_1y_1m_s": round(features_s, 3),
        "backtest_1y_1m_bars_per_s": round(YEAR_1M / policy_s),
        "backtest_policy_trades": policy_metrics["trades"],
        "backtest_signals_1y_1m_s": round(signals_s, 4),
        "backtest_vectorbt_1y_1m_s": round(vbt_s, 4),
        "backtest_vectorbt_cold_1y_1m_s": round(vbt_cold_s, 3),
        "backtest_vectorbt_ratio": round(vbt_s / signals_s, 2),
        "backtest_momentum_total_return": round(ours["total_return"], 6),
        "backtest_vectorbt_momentum_total_return": round(vbt_return, 6),
    }


def _vectorbt_momentum(bars: Bars, positions: np.ndarray) -> tuple[float, float, float]:
    """vectorbt on the same bars and the same target positions (fees only, fills at the close)."""
    import pandas as pd
    import vectorbt as vbt

    index = pd.to_datetime(bars.ts[1:], utc=True)
    close = pd.Series(bars.close[1:], index=index)
    # the position decided at bar t is held from close[t]: target percent orders at that close
    targets = pd.Series(np.r_[positions, positions[-1]], index=index)

    def run() -> float:
        pf = vbt.Portfolio.from_orders(
            close, targets, size_type="targetpercent", fees=FEE, freq="1min", init_cash=10_000.0, direction="both"
        )
        return float(pf.total_return())

    started = time.perf_counter()
    run()  # numba compiles on first use
    cold = time.perf_counter() - started
    started = time.perf_counter()
    total = run()
    return time.perf_counter() - started, cold, total


def run(ctx: Any) -> dict[str, float]:
    bars = year_of_minute_bars()
    market = compute_features(bars)
    figures: dict[str, Any] = dict(bench_envs(market))
    rllib, checkpoint = bench_rllib(bars.slice(0, 20_000), Path(ctx.work_dir))
    figures.update(rllib)
    figures.update(bench_backtests(bars, checkpoint))
    return figures
