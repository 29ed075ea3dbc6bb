"""Promote a policy trained offline: register it in `policies` and announce it on `policy:updates`.

The online trainer promotes only what beats the champion and the baselines on held-out live bars.
A policy trained offline (`tradewind train`) was judged on its own data instead, so its row says
so (`metrics.promotion = "manual"`, with the test-split results it was trained with): the
registry never passes a hand-picked policy off as an online winner.

The markets a policy is promoted for come from its checkpoint: a portfolio policy's `tradewind.json`
lists them (`markets`: [{exchange, symbol}, ...]) and they are the only ones it can trade; a
single-market policy is told its market (`--exchange`, `--symbol`). Naming a market that the
metadata contradicts is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.rl.policy import ALGORITHM_DIR, META_FILE, MODULE_PATH, PolicyError
from shared.rl.portfolio import load_portfolio_policy
from shared.rl.weights import load_weights_policy
from shared.storage.policies import Market, PolicyRegistry, market_set

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
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    # refuses a path outside root and a missing or malformed actor.npz (a portfolio one by its own rules)
    actor = load_portfolio_policy(path, root) if meta.get("markets") else load_weights_policy(path, root)
    if market_set(checkpoint_markets(actor.meta)) != market_set(checkpoint_markets(meta)):
        raise PolicyError(f"{path}: {META_FILE} and the actor's header name different markets")
    return path, meta


def checkpoint_markets(meta: dict[str, Any]) -> list[Market]:
    """The markets a checkpoint's metadata says it trades (a portfolio policy's, in action order); []: not said."""
    try:
        return [(str(m["exchange"]), str(m["symbol"])) for m in meta.get("markets") or []]
    except (TypeError, KeyError) as exc:
        raise PolicyError(
            f"{META_FILE}: expected `markets` as a list of {{exchange, symbol}}, found {meta['markets']!r}"
        ) from exc


def promoted_markets(meta: dict[str, Any], exchange: str | None, symbol: str | None) -> tuple[Market, ...]:
    """The market set to promote a checkpoint for: its metadata's markets, or the one market named; a named
    market the metadata contradicts, or none for a single-market policy, is a ValueError saying which."""
    listed = market_set(checkpoint_markets(meta))
    if (exchange is None) != (symbol is None):
        raise ValueError("expected --exchange and --symbol together (one market), or neither (a portfolio policy)")
    named = ((exchange, symbol),) if exchange and symbol else ()
    if listed:
        if named and named != listed:
            trades = ", ".join(f"{e} {s}" for e, s in listed)
            raise ValueError(
                f"--exchange {exchange} --symbol {symbol}: the checkpoint's {META_FILE} says it trades {trades}; "
                "leave out --exchange/--symbol to promote it for its own markets"
            )
        return listed
    if not named:
        raise ValueError(
            f"a single-market policy (no `markets` in its {META_FILE}): name its market with --exchange and --symbol"
        )
    return named


async def promote_checkpoint(
    db: Any, bus: Bus, checkpoint: Path, meta: dict[str, Any], exchange: str | None, symbol: str | None
) -> dict[str, Any]:
    """Record a checkpoint (from `read_checkpoint`) as a trial for its markets (`promoted_markets`), mark
    it promoted and publish it."""
    markets = promoted_markets(meta, exchange, symbol)
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
        source="manual",
        markets=markets,
    )
    await registry.verdict([policy_id], "promoted by hand (tradewind policy promote)")
    await registry.promote(policy_id, meta["algo"], str(checkpoint), metrics, markets=markets)
    return {
        "policy_id": policy_id,
        "algo": meta["algo"],
        "checkpoint": str(checkpoint),
        "markets": [{"exchange": e, "symbol": s} for e, s in markets],
        **metrics,
    }
