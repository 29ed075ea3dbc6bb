"""Promote a policy trained offline: register it in `policies` and announce it on `policy:updates`.

The online trainer promotes only what beats the champion and the baselines on held-out live bars.
A policy trained offline (`tradewind train`) was judged on its own data instead, so its row says
so (`metrics.promotion = "manual"`, with the test-split results it was trained with): the
registry never passes a hand-picked policy off as an online winner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.rl.policy import ALGORITHM_DIR, META_FILE, MODULE_PATH, PolicyError
from shared.rl.weights import load_weights_policy
from shared.storage.policies import PolicyRegistry

if TYPE_CHECKING:  # the bus (redis) is loaded only by those that publish
    from shared.bus import Bus


def read_checkpoint(path: str | Path, root: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The checkpoint's absolute path and `tradewind.json`, after checking it holds an RLModule and
    its weights-only actor (what the executor will load), under the policy directory `root`."""
    path = Path(path).resolve()
    meta_path = path / META_FILE
    if not meta_path.is_file() or not path.joinpath(ALGORITHM_DIR, *MODULE_PATH).is_dir():
        raise PolicyError(
            f"{path}: expected a directory written by `tradewind train --out` "
            f"(with {META_FILE} and {ALGORITHM_DIR}/{'/'.join(MODULE_PATH)})"
        )
    load_weights_policy(path, root)  # refuses a path outside root and a missing or malformed actor.npz
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    return path, meta


async def promote_checkpoint(
    db: Any, bus: Bus, checkpoint: Path, meta: dict[str, Any], exchange: str, symbol: str
) -> dict[str, Any]:
    """Record a checkpoint (from `read_checkpoint`) as a trial for (exchange, symbol), mark it
    promoted and publish it."""
    trained = meta.get("metrics", {})
    test = trained.get("test", {}) if isinstance(trained.get("test"), dict) else {}
    metrics = {
        "promotion": "manual",
        "trained_on": meta.get("data", ""),
        **{k: v for k, v in test.items() if isinstance(v, int | float) and not isinstance(v, bool)},
    }
    registry = PolicyRegistry(db, bus)
    policy_id = await registry.record_trial(
        meta["algo"],
        str(checkpoint),
        metrics,
        {"algo": meta["algo"], "timesteps": meta.get("timesteps"), "bar_seconds": meta.get("bar_seconds")},
        int(meta["train_from_ns"]),
        int(meta.get("validation_to_ns", meta["train_to_ns"])),
        exchange,
        symbol,
        source="manual",
    )
    await registry.verdict([policy_id], "promoted by hand (tradewind policy promote)")
    await registry.promote(policy_id, meta["algo"], str(checkpoint), metrics, exchange, symbol)
    return {"policy_id": policy_id, "algo": meta["algo"], "checkpoint": str(checkpoint), **metrics}
