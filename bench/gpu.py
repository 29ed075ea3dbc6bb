"""RLlib on a GPU beside the CPU: PPO and DQN on a synthetic market, env steps sampled and samples
trained per second, with the learner's device read from the learner itself.

`bench/gpu.sh` runs this once with ``--gpus 0`` and once with ``--gpus 1`` and merges both into
bench/results.json (keys ``rllib_<algo>_<device>_env_steps_per_s``, ``…_trained_per_s``,
``…_iteration_s``; ``<device>`` is ``cpu`` or ``gpu``). Figures are from whole ``algo.train()``
iterations after one warm-up iteration (sampling, learning and weight sync together).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ITERATIONS = 5


def _lifetime(result: dict[str, Any], name: str) -> float:
    """A lifetime counter from an RLlib result, wherever this RLlib version puts it."""
    for scope in (result, result.get("env_runners", {}), result.get("learners", {}).get("__all_modules__", {})):
        if name in scope:
            return float(scope[name])
    raise KeyError(f"{name} not in the RLlib result (keys: {sorted(result)[:20]}…)")


def measure(algo_name: str, gpus: float, bars_n: int = 20_000) -> dict[str, Any]:
    """Build `algo_name` on synthetic bars with `gpus` per learner and time ``ITERATIONS`` train() calls."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from bench.bench_trainer import learner_device
    from services.trainer.synth import make_market
    from services.trainer.training import build_algorithm_config, env_config_from, load_config, ray_session
    from shared.rl.features import compute_features

    market = compute_features(make_market("mean_reverting", bars_n, seed=0).bars)
    config = load_config(algo_name)
    with ray_session(num_cpus=os.cpu_count() or 2):  # Ray finds the GPUs itself
        algo = build_algorithm_config(
            algo_name, config, market, env_config_from(config, 0, len(market) // 2), 0, gpus
        ).build_algo()
        try:
            first = algo.train()  # warm: first compile, buffers filling
            sampled0 = _lifetime(first, "num_env_steps_sampled_lifetime")
            trained0 = _lifetime(first, "num_env_steps_trained_lifetime")
            started = time.perf_counter()
            for _ in range(ITERATIONS):
                last = algo.train()
            elapsed = time.perf_counter() - started
            device = learner_device(algo)
        finally:
            algo.stop()
    tag = f"rllib_{algo_name}_{'gpu' if gpus > 0 else 'cpu'}"
    return {
        f"{tag}_env_steps_per_s": round((_lifetime(last, "num_env_steps_sampled_lifetime") - sampled0) / elapsed),
        f"{tag}_trained_per_s": round((_lifetime(last, "num_env_steps_trained_lifetime") - trained0) / elapsed),
        f"{tag}_iteration_s": round(elapsed / ITERATIONS, 3),
        f"{tag}_device": device,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__)
    parser.add_argument("--gpus", type=float, default=0.0, help="num_gpus_per_learner (0 = CPU)")
    parser.add_argument("--algo", action="append", choices=["ppo", "dqn"], help="default: both")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.json")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    for algo_name in args.algo or ["ppo", "dqn"]:
        figures.update(measure(algo_name, args.gpus))
        print(json.dumps(figures), flush=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.update(figures)
    args.out.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
