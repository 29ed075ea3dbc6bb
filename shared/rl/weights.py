"""Policies as data: the actor's weights in one `.npz` file, run in numpy, never unpickled.

`tradewind train` writes `actor.npz` beside the RLlib checkpoint. It holds float32 arrays named
`<stream>.<layer>.weight` (in x out) and `.bias`, plus `header`: UTF-8 JSON bytes (a uint8 array)
with the layout and the policy's `tradewind.json` (features, bar length, env config), so that one
file, and its sha256, is everything the executor and the backtest use. It is read with
`np.load(..., allow_pickle=False)`: a tampered file can give wrong numbers, never run code.

Layouts (`kind`):
- `mlp`: the actor of PPO/APPO (actor encoder + pi head): stream `actor`; its outputs are the
  action-distribution inputs (logits; or [mean, log_std] for a continuous action).
- `dueling`: DQN with dueling heads: `encoder`, then `advantage` and `value` streams;
  Q = value + advantage - mean(advantage), action = argmax Q.
- `q`: DQN without dueling: `encoder`, then `advantage` (the Q-values).

Loading through `load_weights_policy` refuses a path outside the policy root and, when an
expected sha256 is given (the registry's, carried as `<dir>#sha256=<hex>`), any other content.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.rl.policy import CheckpointPolicy, Layer, PolicyError, numpy_forward

log = logging.getLogger(__name__)

WEIGHTS_FILE = "actor.npz"
FORMAT = "tradewind-actor"
VERSION = 1
HEADER = "header"
ACTIVATIONS = (None, "tanh", "relu")
STREAMS = {"mlp": ("actor",), "dueling": ("encoder", "advantage", "value"), "q": ("encoder", "advantage")}
SHA_MARK = "#sha256="


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    return sha256_bytes(Path(path).read_bytes())


@dataclass(frozen=True)
class NumpyNet:
    """The exported network: layers per stream, combined as its `kind` says."""

    kind: str
    streams: dict[str, list[Layer]]

    def forward(self, obs: NDArray[np.float32]) -> NDArray[np.float32]:
        """Action-distribution inputs (`mlp`) or Q-values (`dueling`, `q`) for a batch of observations."""
        s = self.streams
        if self.kind == "mlp":
            return numpy_forward(s["actor"], obs)
        hidden = numpy_forward(s["encoder"], obs)
        advantage = numpy_forward(s["advantage"], hidden)
        if self.kind == "q":
            return advantage
        value = numpy_forward(s["value"], hidden)
        return value + advantage - advantage.mean(axis=1, keepdims=True)


# ---- export (training side: needs torch) -----------------------------------------------------


def _torch_layers(part: Any) -> list[Layer] | None:
    """Linear (+ tanh/ReLU) layers of an RLlib MLP component (`.net.mlp`), or None if it is anything else."""
    import torch

    mlp = getattr(getattr(part, "net", None), "mlp", None)
    if not isinstance(mlp, torch.nn.Sequential):
        return None
    layers: list[Layer] = []
    for step in mlp:
        if isinstance(step, torch.nn.Linear):
            weight = step.weight.detach().cpu().numpy().T.astype(np.float32)
            bias = np.zeros(weight.shape[1], np.float32) if step.bias is None else step.bias.detach().cpu().numpy()
            layers.append((np.ascontiguousarray(weight), bias.astype(np.float32), None))
        elif isinstance(step, torch.nn.Tanh | torch.nn.ReLU) and layers and layers[-1][2] is None:
            w, b, _ = layers[-1]
            layers[-1] = (w, b, "tanh" if isinstance(step, torch.nn.Tanh) else "relu")
        else:
            return None
    return layers


def numpy_net(module: Any) -> NumpyNet:
    """The module's greedy decision as numpy layers: PPO/APPO's actor, or DQN's Q-network (dueling or not).

    Raises PolicyError for anything else (e.g. LSTM or CNN encoders, distributional Q), naming what was found.
    """
    encoder = getattr(module, "encoder", None)
    if hasattr(module, "pi"):  # actor-critic: the actor's own encoder, or the one it shares with the critic
        trunk = getattr(encoder, "actor_encoder", None) or getattr(encoder, "encoder", None) or encoder
        actor, head = _torch_layers(trunk), _torch_layers(module.pi)
        if actor is not None and head is not None:
            return NumpyNet("mlp", {"actor": actor + head})
    elif hasattr(module, "af"):  # DQN: advantage (or Q) head, value head when dueling
        trunk = _torch_layers(encoder)
        advantage = _torch_layers(module.af)
        dueling = bool(getattr(module, "uses_dueling", False)) and hasattr(module, "vf")
        if int(getattr(module, "num_atoms", 1) or 1) == 1 and trunk is not None and advantage is not None:
            if not dueling:
                return NumpyNet("q", {"encoder": trunk, "advantage": advantage})
            value = _torch_layers(module.vf)
            if value is not None:
                return NumpyNet("dueling", {"encoder": trunk, "advantage": advantage, "value": value})
    raise PolicyError(
        f"{type(module).__name__}: expected a plain MLP (Linear + tanh/ReLU) actor or Q-network to export; "
        "this module cannot run as weights only"
    )


def encode_weights(net: NumpyNet, meta: dict[str, Any], obs_size: int, action_space: dict[str, Any]) -> bytes:
    """The `.npz` bytes of `net` with its header (layout + the policy's metadata)."""
    header = {
        "format": FORMAT,
        "version": VERSION,
        "kind": net.kind,
        "obs_size": obs_size,
        "action_space": action_space,
        "layers": {name: [activation for _, _, activation in layers] for name, layers in net.streams.items()},
        "meta": {k: v for k, v in meta.items() if k != "metrics"},
    }
    arrays: dict[str, NDArray[Any]] = {HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for name, layers in net.streams.items():
        for i, (weight, bias, _) in enumerate(layers):
            arrays[f"{name}.{i}.weight"] = weight.astype(np.float32)
            arrays[f"{name}.{i}.bias"] = bias.astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def export_weights(checkpoint: str | Path) -> str:
    """Write `actor.npz` into a `tradewind train --out` directory from its RLModule; return its sha256.

    Unpickling the checkpoint happens here, in training, only."""
    out = Path(checkpoint)
    policy = CheckpointPolicy.load(out)
    module, cfg = policy.module, policy.env_config
    net = numpy_net(module)
    obs_size = len(policy.meta["feature_names"]) + 2  # features, position, last-bar PnL (env_config.observe)
    action_space: dict[str, Any] = (
        {"type": "box", "low": cfg.min_position, "high": 1.0}
        if cfg.continuous
        else {"type": "discrete", "n": len(cfg.position_levels)}
    )
    data = encode_weights(net, policy.meta, obs_size, action_space)
    tmp = out / f".{WEIGHTS_FILE}.tmp"
    tmp.write_bytes(data)
    tmp.replace(out / WEIGHTS_FILE)  # readers see the whole file or none
    return sha256_bytes(data)


# ---- load (executor, backtest: numpy only) ---------------------------------------------------


class WeightsPolicy(CheckpointPolicy):
    """A policy run from `actor.npz` alone: the same interface (and actions) as `CheckpointPolicy`."""

    def __init__(self, net: NumpyNet, meta: dict[str, Any], path: Path, sha256: str) -> None:
        super().__init__(None, meta, path)
        self.net = net
        self.sha256 = sha256

    def _act_batch(self, obs: NDArray[np.float32]) -> NDArray[np.float64]:
        out = self.net.forward(obs)
        if self.env_config.continuous:  # diagonal Gaussian: [mean, log_std]
            return out[:, 0].astype(np.float64)
        return out.argmax(axis=-1).astype(np.float64)


def decode_net(data: bytes, where: Path) -> tuple[NumpyNet, dict[str, Any]]:
    """The network and header of `.npz` bytes (never unpickling); PolicyError names the file and what is wrong."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise PolicyError(f"{where}: not a weights-only policy file (np.load, allow_pickle=False): {exc}") from exc
    try:
        header = json.loads(bytes(arrays.pop(HEADER)).decode())
    except (KeyError, ValueError) as exc:
        raise PolicyError(f"{where}: expected a JSON `{HEADER}` array: {exc}") from exc
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise PolicyError(
            f"{where}: expected format {FORMAT} v{VERSION}, found {header.get('format')} v{header.get('version')}"
        )
    kind = header.get("kind")
    if kind not in STREAMS:
        raise PolicyError(f"{where}: unknown layout {kind!r}; expected one of {', '.join(STREAMS)}")
    streams: dict[str, list[Layer]] = {}
    for name in STREAMS[kind]:
        activations = header["layers"].get(name) or []
        layers: list[Layer] = []
        for i, activation in enumerate(activations):
            if activation not in ACTIVATIONS:
                raise PolicyError(f"{where}: {name}.{i}: unknown activation {activation!r}")
            w, b = arrays.get(f"{name}.{i}.weight"), arrays.get(f"{name}.{i}.bias")
            if w is None or b is None or w.ndim != 2 or b.shape != (w.shape[1],):
                raise PolicyError(f"{where}: {name}.{i}: missing or misshapen weight/bias")
            if layers and layers[-1][0].shape[1] != w.shape[0]:
                raise PolicyError(f"{where}: {name}.{i}: {w.shape[0]} inputs after {layers[-1][0].shape[1]} outputs")
            layers.append((w.astype(np.float32), b.astype(np.float32), activation))
        if not layers:
            raise PolicyError(f"{where}: layout {kind} needs a {name!r} stream")
        streams[name] = layers
    first = streams[STREAMS[kind][0]][0][0]
    if first.shape[0] != int(header["obs_size"]):
        raise PolicyError(f"{where}: first layer takes {first.shape[0]} inputs, header says {header['obs_size']}")
    return NumpyNet(kind, streams), header


def decode_weights(data: bytes, where: Path, sha256: str) -> WeightsPolicy:
    """Parse and check a single-market policy's `.npz` bytes; PolicyError names the file and what is wrong."""
    net, header = decode_net(data, where)
    meta = header["meta"]
    if meta.get("markets"):
        raise PolicyError(
            f"{where}: a portfolio policy over {len(meta['markets'])} markets; load it with load_portfolio_policy"
        )
    if header["obs_size"] != len(meta.get("feature_names", [])) + 2:
        raise PolicyError(f"{where}: obs_size {header['obs_size']} does not match its feature names")
    return WeightsPolicy(net, meta, where, sha256)


def split_sha(spec: str) -> tuple[str, str | None]:
    """`<path>#sha256=<hex>` → (path, hex); a spec without the mark → (spec, None)."""
    path, mark, digest = spec.partition(SHA_MARK)
    return path, (digest.lower() if mark else None)


def with_sha(path: str, sha256: str | None) -> str:
    """The policy reference the registry publishes: the checkpoint directory and its weights' sha256."""
    return f"{path}{SHA_MARK}{sha256}" if sha256 else path


def load_weights_policy(spec: str | Path, root: str | Path | None, *, require_sha: bool = False) -> WeightsPolicy:
    """Load `actor.npz` from a policy directory (or the file itself) under `root`.

    `spec` may carry the registry's `#sha256=<hex>`: the file's bytes must hash to it. With
    `require_sha` a spec without one is refused (the executor trades only registered weights).
    `root=None` skips the directory check (training's own evaluation of what it just wrote).
    """
    data, where, digest = read_weights(spec, root, require_sha=require_sha)
    return decode_weights(data, where, digest)


def read_weights(spec: str | Path, root: str | Path | None, *, require_sha: bool = False) -> tuple[bytes, Path, str]:
    """The checked bytes of `actor.npz` (see `load_weights_policy`), its policy directory and sha256."""
    raw, expected = split_sha(str(spec))
    path = Path(raw).expanduser().resolve()
    if root is not None:
        base = Path(root).expanduser().resolve()
        if not path.is_relative_to(base):
            raise PolicyError(
                f"{path}: outside the policy directory {base}; policies load only from there "
                "(TRADEWIND_TRAINER__POLICY_DIR)"
            )
    if not path.exists():
        raise PolicyError(f"{path}: no such file or directory (expected a `tradewind train --out` directory)")
    file = path / WEIGHTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise PolicyError(f"{file}: no weights-only policy file (written by `tradewind train` as {WEIGHTS_FILE})")
    if require_sha and not expected:
        raise PolicyError(f"{file}: no sha256 recorded in the policies registry for it; promote it again")
    data = file.read_bytes()
    digest = sha256_bytes(data)
    if expected is not None and digest != expected:
        raise PolicyError(f"{file}: sha256 {digest} differs from the registry's {expected}; refusing to load it")
    return data, (path if path.is_dir() else file.parent), digest
