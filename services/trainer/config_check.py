"""Check a training config (configs/<algo>.toml + --config + --set) before Ray or RLlib sees it.

An unknown section or key, or a value of the wrong type, is an error that names it and lists what
is valid: a typo in `--set` must not be silently ignored, nor fail deep inside RLlib minutes later.
"""

from __future__ import annotations

import dataclasses
import inspect
import tomllib
from typing import Any

from services.trainer.errors import TrainingError

# Keys the trainer itself reads (not passed to RLlib as they are).
OWN_KEYS: dict[str, set[str]] = {
    "training": {"epsilon_timesteps", "final_epsilon", "prioritized_replay", "replay_capacity"},
    "env_runners": {"fast_sampler"},  # FastVecEnvRunner (array-level sampling) instead of RLlib's runner
    "cost": {"taker_fee", "maker_fee", "half_spread", "impact", "max_impact"},
    "split": {"train", "validation"},
    "features": {"time"},
    "selection": {"every_steps"},
}
FEATURE_TIMES = ("day", "week", "none")


def check_config(algo: str, config: dict[str, Any]) -> None:
    """Raise `TrainingError` naming the first unknown section/key or mistyped value of ``config``."""
    from services.trainer.training import CONFIG_DIR

    defaults: dict[str, Any] = tomllib.loads((CONFIG_DIR / f"{algo}.toml").read_text())
    sections = sorted({*defaults, *OWN_KEYS, "env", "model", "env_runners"})
    for section, values in config.items():
        if section not in sections:
            raise TrainingError(f"unknown config section [{section}]; valid sections: {', '.join(sections)}")
        if not isinstance(values, dict):
            raise TrainingError(f"[{section}]: expected a table of keys, found {values!r}")
        known = defaults.get(section, {})
        for key, value in values.items():
            if key not in known and key not in OWN_KEYS.get(section, set()) and not _rllib_accepts(algo, section, key):
                valid = sorted({*known, *OWN_KEYS.get(section, set()), *_listed(algo, section)})
                raise TrainingError(
                    f"unknown config key {section}.{key}; valid keys of [{section}]: {', '.join(valid)}"
                )
            if key in known:
                _check_type(f"{section}.{key}", value, known[key])
    _check_values(config)


def _check_type(name: str, value: Any, default: Any) -> None:
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) == isinstance(default, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and (isinstance(default, float) or isinstance(value, int))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise TrainingError(f"{name}: expected {type(default).__name__} like {default!r}, found {value!r}")


def _check_values(config: dict[str, Any]) -> None:
    split = config.get("split", {})
    train, validation = split.get("train", 0.6), split.get("validation", 0.2)
    for key, value in (("train", train), ("validation", validation)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
            raise TrainingError(f"split.{key}: expected a fraction in (0, 1), found {value!r}")
    if train + validation >= 1:
        raise TrainingError(
            f"split.train + split.validation: expected < 1 (the rest is the test split), found {train + validation:g}"
        )
    for key, value in config.get("cost", {}).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
            raise TrainingError(f"cost.{key}: expected a fraction in [0, 1), found {value!r}")
    time = config.get("features", {}).get("time", "day")
    if time not in FEATURE_TIMES:
        raise TrainingError(f"features.time: expected one of {', '.join(FEATURE_TIMES)}, found {time!r}")
    fast = config.get("env_runners", {}).get("fast_sampler", False)
    if not isinstance(fast, bool):
        raise TrainingError(f"env_runners.fast_sampler: expected true or false, found {fast!r}")
    every = config.get("selection", {}).get("every_steps", 0)
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
        raise TrainingError(f"selection.every_steps: expected an integer ≥ 0, found {every!r}")


def _listed(algo: str, section: str) -> list[str]:
    """The keys RLlib (or the env) takes in ``section``; empty for the trainer's own closed sections."""
    if section == "env":
        from shared.rl.env_config import EnvConfig

        return [f.name for f in dataclasses.fields(EnvConfig) if f.name not in ("cost", "start", "stop")]
    if section == "model":
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        return [f.name for f in dataclasses.fields(DefaultModelConfig)]
    if section in ("training", "env_runners"):
        return [p for p in inspect.signature(getattr(_rllib_config(algo), section)).parameters if p != "kwargs"]
    return []


def _rllib_accepts(algo: str, section: str, key: str) -> bool:
    return section in ("env", "model", "training", "env_runners") and key in _listed(algo, section)


def _rllib_config(algo: str) -> Any:
    if algo == "dqn":
        from ray.rllib.algorithms.dqn import DQNConfig

        return DQNConfig()
    if algo == "ppo":
        from ray.rllib.algorithms.ppo import PPOConfig

        return PPOConfig()
    from ray.rllib.algorithms.appo import APPOConfig

    return APPOConfig()
