"""Training spread over a Ray cluster of several nodes.

RLlib creates a driver's env runners with Ray's default scheduling, which may pack them all on one
node; only a driver inside a placement group puts runner k in bundle k. So a run on a cluster goes,
as a Ray Tune trial does, to a task in bundle 0 of a SPREAD placement group with one bundle per env
runner, and its checkpoint comes back as a tar stream: the nodes need no shared disk.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.trainer.errors import TrainingError
from shared.rl.policy import META_FILE

# The host's slot (driver and learner) is smaller than a runner's: Ray's SPREAD puts each bundle in
# turn on an unused node, then on the least-loaded one, so the host's node is refilled first and the
# runners reach every node (checked on a 2-node loopback cluster; equal slots sometimes left one idle).
HOST_CPUS = 0.5
PLACEMENT_TIMEOUT_S = 600.0
log = logging.getLogger(__name__)


def cluster_runners(requested: int | None) -> int:
    """How many env runners to spread over the cluster; 0 when the run stays in this process: a
    single node, or already placed (a Tune trial, or the spread host itself). Default: one per node."""
    import ray

    if ray.util.get_current_placement_group() is not None:
        return 0
    nodes = alive_nodes()
    return (requested or nodes) if nodes > 1 else 0


def asking_for(config: dict[str, Any], env_runners: int | None) -> dict[str, Any]:
    """A copy of a training config that asks for `env_runners` env runners (None: as it says)."""
    config = copy.deepcopy(config)
    if env_runners is not None:
        config.setdefault("env_runners", {})["num_env_runners"] = env_runners
    return config


def spread_if_several_nodes(
    train_fn: Callable[..., Any],
    kwargs: dict[str, Any],
    out: Path,
    env_runners: int | None,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any] | None:
    """In a Ray session: on a cluster of several nodes (and not placed yet), run `train_fn` with its env
    runners spread over them (`train_spread`) and return its metrics; None when the run belongs here."""
    runners = cluster_runners(env_runners)
    if not runners:
        return None
    metrics = train_spread(train_fn, kwargs, out, runners)
    if progress is not None:
        progress(min(int(metrics["timesteps"]), int(kwargs["timesteps"])), int(kwargs["timesteps"]))
    return metrics


def alive_nodes() -> int:
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive"))


def runner_nodes(algorithm: Any) -> list[str]:
    """Ids of the Ray nodes whose env runners sample (the driver's own runner when it has no remote ones)."""
    import ray

    group = algorithm.env_runner_group
    remote = group.num_remote_env_runners() > 0
    found = group.foreach_env_runner(lambda _: ray.get_runtime_context().get_node_id(), local_env_runner=not remote)
    return sorted(set(found))


def bundles(runners: int, cpus_per_runner: float, gpus: float) -> list[dict[str, float]]:
    """Bundle 0 hosts the driver and its learner (with its GPUs); bundle k the k-th env runner."""
    host = {"CPU": HOST_CPUS, **({"GPU": gpus} if gpus > 0 else {})}
    return [host, *({"CPU": cpus_per_runner} for _ in range(runners))]


def train_spread(
    train_fn: Callable[..., Any], kwargs: dict[str, Any], out: Path, runners: int, timeout: float = PLACEMENT_TIMEOUT_S
) -> dict[str, Any]:
    """Run `train_fn(out_dir=..., **kwargs)` in a SPREAD placement group with `runners` env runners;
    unpack its checkpoint into `out` and return its metrics. Waits up to `timeout` for free slots."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    config = kwargs["config"]
    config["env_runners"] = {**config.get("env_runners", {}), "num_env_runners": runners}
    cpus = float(config["env_runners"].get("num_cpus_per_env_runner", 1))
    gpus = float(kwargs.get("gpus") or 0.0)
    wanted = bundles(runners, cpus, gpus)
    init_from = kwargs.pop("init_from", None)
    init_tar = pack(Path(init_from)) if init_from is not None else None
    group = placement_group(wanted, strategy="SPREAD")
    try:
        ready, _ = ray.wait([group.ready()], timeout=timeout)
        if not ready:
            total = ray.cluster_resources().get("CPU", 0.0)
            raise TrainingError(
                f"Ray cluster: no room for {wanted} (CPU {sum(b['CPU'] for b in wanted):g} of {total:g} logical "
                f"CPUs) within {timeout:g} s; other runs hold the slots, or ask for fewer with --env-runners"
            )
        strategy = PlacementGroupSchedulingStrategy(group, 0, placement_group_capture_child_tasks=True)
        host = ray.remote(_host).options(num_cpus=HOST_CPUS, num_gpus=gpus, scheduling_strategy=strategy)
        tar, metrics = ray.get(host.remote(train_fn, kwargs, init_tar))
    finally:
        remove_placement_group(group)
    out.mkdir(parents=True, exist_ok=True)
    unpack(tar, out)
    metrics["checkpoint"] = str(out)
    meta = json.loads((out / META_FILE).read_text())
    meta["init_from"] = None if init_from is None else str(init_from)
    meta["metrics"] = metrics
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return dict(metrics)


def _host(train_fn: Callable[..., Any], kwargs: dict[str, Any], init_tar: bytes | None) -> tuple[bytes, Any]:
    """The run, on the node Ray placed bundle 0: train into a temp dir, send the checkpoint back."""
    with tempfile.TemporaryDirectory(prefix="tradewind-") as tmp:
        if init_tar is not None:
            unpack(init_tar, Path(tmp) / "init")
            kwargs["init_from"] = Path(tmp) / "init"
        result = train_fn(out_dir=Path(tmp) / "out", **kwargs)
        return pack(Path(tmp) / "out"), result.metrics


def pack(directory: Path) -> bytes:
    if not directory.is_dir():
        raise TrainingError(f"{directory}: expected a checkpoint directory")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(directory, arcname=".")
    return buffer.getvalue()


def unpack(data: bytes, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(directory, filter="data")
