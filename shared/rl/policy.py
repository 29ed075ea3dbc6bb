"""Trained policies without the Algorithm: the RLModule of a checkpoint, inference only.

A checkpoint policy loads only the RLModule (`RLModule.from_checkpoint` + `forward_inference`).
Because an observation is (market features at t, position, last-bar PnL of that position), the
action at every bar is a function of the bar and the position held. So the backtest runs the
network in batches over bars for one held position at a time, chunk by chunk, and computes
another position's actions only when the policy moves there: a policy that holds its positions
for a while costs about one forward pass per bar. The executor's RL strategy calls `act` on one
observation per bar close. (`services.trainer.policy` holds the backtest's baselines and the
protocol both kinds of policy meet there.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.rl.env_config import PNL_FEATURE_SCALE, EnvConfig, env_config_from_dict, observe
from shared.rl.features import MarketData

META_FILE = "tradewind.json"
ALGORITHM_DIR = "algorithm"
MODULE_PATH = ("learner_group", "learner", "rl_module", "default_policy")
BATCH_ROWS = 1 << 16
WALK_CHUNK = 8_192  # bars per step of the lazy (bar x position) walk


class PolicyError(ValueError):
    """A policy that cannot be loaded; the message names the path or name and what was expected."""


Layer = tuple[NDArray[np.float32], NDArray[np.float32], str | None]  # weight (in x out), bias, activation


def numpy_actor(module: Any) -> list[Layer] | None:
    """The actor of an actor-critic module (PPO, APPO with separate value layers) as numpy layers,
    or None when it is not a plain MLP (Linear + tanh/ReLU), e.g. DQN's Q heads.

    `forward_inference` also runs the value network, and torch's single-threaded tanh is several
    times slower than numpy's vectorised one: a numpy actor is ~3x faster on a backtest's batches.
    Logits agree with torch to ~1e-6 (float32 rounding), so actions differ only on exact ties.
    """
    import torch

    actor = getattr(getattr(module, "encoder", None), "actor_encoder", None)
    head = getattr(module, "pi", None)
    layers: list[Layer] = []
    for part in (actor, head):
        mlp = getattr(getattr(part, "net", None), "mlp", None)
        if not isinstance(mlp, torch.nn.Sequential):
            return None
        for step in mlp:
            if isinstance(step, torch.nn.Linear):
                weight = step.weight.detach().numpy().T.astype(np.float32)
                bias = np.zeros(weight.shape[1], np.float32) if step.bias is None else step.bias.detach().numpy()
                layers.append((np.ascontiguousarray(weight), bias.astype(np.float32), None))
            elif isinstance(step, torch.nn.Tanh | torch.nn.ReLU) and layers and layers[-1][2] is None:
                w, b, _ = layers[-1]
                layers[-1] = (w, b, "tanh" if isinstance(step, torch.nn.Tanh) else "relu")
            else:
                return None
    return layers or None


def numpy_forward(layers: list[Layer], obs: NDArray[np.float32]) -> NDArray[np.float32]:
    x = obs
    for weight, bias, activation in layers:
        x = x @ weight
        x += bias
        if activation == "tanh":
            np.tanh(x, out=x)
        elif activation == "relu":
            np.maximum(x, 0.0, out=x)
    return x


class CheckpointPolicy:
    """A trained policy: the RLModule from a `tradewind train --out` directory, inference only."""

    def __init__(self, module: Any, meta: dict[str, Any], path: Path) -> None:
        self.module = module
        self.meta = meta
        self.path = path
        self.name = f"{meta['algo']}:{path.name}"
        self.env_config = env_config_from_dict(meta["env"])
        self.feature_options: dict[str, Any] = meta.get("features", {})
        self.actor = numpy_actor(module) if module is not None else None  # None: WeightsPolicy

    @classmethod
    def load(cls, path: str | Path, torch_threads: int | None = 1) -> CheckpointPolicy:
        """Load the module for inference; one torch and one BLAS thread by default, for the whole
        process (small nets on shared cores run faster and far steadier single-threaded: 0.75 s
        against 1.14 s for a year of minute bars on 2 busy cores; None keeps the settings)."""
        path = Path(path)
        meta_path = path / META_FILE
        module_path = path.joinpath(ALGORITHM_DIR, *MODULE_PATH)
        if not meta_path.is_file() or not module_path.is_dir():
            raise PolicyError(
                f"{path}: expected a directory written by `tradewind train --out` "
                f"(with {META_FILE} and {ALGORITHM_DIR}/{'/'.join(MODULE_PATH)})"
            )
        import torch
        from ray.rllib.core.rl_module.rl_module import RLModule

        if torch_threads is not None:
            from threadpoolctl import threadpool_limits

            torch.set_num_threads(torch_threads)
            threadpool_limits(torch_threads, user_api="blas")

        module = RLModule.from_checkpoint(str(module_path.resolve()))
        module.eval()  # type: ignore[attr-defined]  # a TorchRLModule is a torch.nn.Module
        return cls(module, json.loads(meta_path.read_text()), path)

    def act(self, obs: NDArray[np.float32]) -> NDArray[np.float64]:
        """Deterministic actions for a batch of observations (discrete indices or continuous positions)."""
        out = [self._act_batch(obs[i : i + BATCH_ROWS]) for i in range(0, len(obs), BATCH_ROWS)]
        return np.concatenate(out) if out else np.zeros(0)

    def _act_batch(self, obs: NDArray[np.float32]) -> NDArray[np.float64]:
        if self.actor is not None:
            logits = numpy_forward(self.actor, obs)
        else:
            import torch

            with torch.inference_mode():
                result = self.module.forward_inference({"obs": torch.from_numpy(obs)})
            if "actions" in result:
                return np.asarray(result["actions"].numpy(), dtype=np.float64)
            logits = result["action_dist_inputs"].numpy()
        if self.env_config.continuous:  # diagonal Gaussian: [mean, log_std]
            return logits[:, 0].astype(np.float64)
        return logits.argmax(axis=-1).astype(np.float64)

    def positions(
        self, market: MarketData, start: int, stop: int, config: EnvConfig | None = None
    ) -> NDArray[np.float64]:
        cfg = self.env_config
        names = tuple(self.meta["feature_names"])
        if names != market.names:
            raise PolicyError(f"{self.path}: trained on features {names}, the data gives {market.names}")
        if cfg.continuous:
            return self._positions_sequential(market, start, stop)
        levels = np.asarray(cfg.position_levels)
        feats = market.features[start:stop]
        last = market.last_return[start:stop]
        n = stop - start
        choice = np.empty(n, dtype=np.int64)
        current = int(self.act(self._observe(market, start, 0.0)[None, :])[0])  # a flat start
        choice[0] = current
        for chunk_start in range(1, n, WALK_CHUNK):
            end = min(chunk_start + WALK_CHUNK, n)
            rows: dict[int, tuple[int, NDArray[np.int64]]] = {}
            j = chunk_start
            while j < end:
                if current not in rows:  # actions while holding this level, computed only when held
                    rows[current] = (j, self._level_actions(feats[j:end], last[j:end], float(levels[current])))
                row_start, actions = rows[current]
                ahead = actions[j - row_start :]
                moves = np.flatnonzero(ahead != current)
                if len(moves) == 0:
                    choice[j:end] = current
                    break
                m = int(moves[0])
                choice[j : j + m] = current
                current = int(ahead[m])
                choice[j + m] = current
                j += m + 1
        return levels[choice]

    def _level_actions(
        self, feats: NDArray[np.float32], last: NDArray[np.float64], position: float
    ) -> NDArray[np.int64]:
        obs = np.empty((len(feats), feats.shape[1] + 2), dtype=np.float32)
        obs[:, :-2] = feats
        obs[:, -2] = position
        obs[:, -1] = position * last * PNL_FEATURE_SCALE
        return self.act(obs).astype(np.int64)

    def _observe(self, market: MarketData, t: int, position: float) -> NDArray[np.float32]:
        return observe(market.features[t], position, float(market.last_return[t]))

    def _positions_sequential(self, market: MarketData, start: int, stop: int) -> NDArray[np.float64]:
        cfg = self.env_config
        out = np.zeros(stop - start)
        position = 0.0
        for i, t in enumerate(range(start, stop)):
            position = float(np.clip(self.act(self._observe(market, t, position)[None, :])[0], cfg.min_position, 1.0))
            out[i] = position
        return out
