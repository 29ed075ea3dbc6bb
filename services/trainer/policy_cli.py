"""`tradewind policy promote|list`: the registry seen from the command line."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from shared.cli_support import NETWORK_TIMEOUT_S, InputError, reaching


@click.group()
def policy() -> None:
    """The policy registry: hand a policy trained offline to a running stack."""


@policy.command()
@click.argument("checkpoint", type=click.Path(file_okay=False, exists=True))
@click.option("--exchange", help="venue a single-market policy trades on, e.g. binance (a portfolio's: its metadata)")
@click.option("--symbol", help="market a single-market policy trades, e.g. BTC/USDT (a portfolio's: its metadata)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def promote(checkpoint: str, exchange: str | None, symbol: str | None, as_json: bool) -> None:
    """Register CHECKPOINT (a `tradewind train --out` dir) as promoted and publish it on policy:updates.

    A running executor hot-loads it and trades it on paper. The registry row is marked
    `promotion: manual` with the test results the policy was trained with: this is a hand-off,
    not the online trainer's out-of-sample promotion. A portfolio policy is promoted for the markets
    its `tradewind.json` lists; --exchange/--symbol name a single-market policy's market and are
    refused when they contradict the metadata.
    """
    from services.trainer.promotion import promote_checkpoint, promoted_markets, read_checkpoint
    from shared.bus import RedisBus, connect_redis
    from shared.cli_support import load_settings_or_exit, running_stack
    from shared.rl.policy import PolicyError
    from shared.storage import Database

    settings = load_settings_or_exit()
    try:
        path, meta = read_checkpoint(checkpoint, settings.trainer.policy_dir)
        markets = promoted_markets(meta, exchange, symbol)
    except (PolicyError, ValueError) as exc:
        raise InputError(str(exc)) from None
    found = running_stack(settings, database=True)

    async def run() -> dict[str, Any]:
        with reaching("PostgreSQL", found.database):
            db = await Database.connect(found.database, settings.storage, NETWORK_TIMEOUT_S)
        redis = connect_redis(found.redis, NETWORK_TIMEOUT_S, cluster=settings.bus.cluster)
        try:
            await db.migrate()
            return await promote_checkpoint(db, RedisBus(redis, settings.bus), path, meta, exchange, symbol)
        finally:
            await db.close()
            await redis.aclose()

    with reaching("Redis", found.redis):
        result = asyncio.run(run())
    if as_json:
        click.echo(json.dumps(result))
    else:
        where = ", ".join(f"{e} {s}" for e, s in markets)
        click.echo(f"promoted {result['policy_id']} ({result['algo']}) for {where}: {result['checkpoint']}")


@policy.command(name="list")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="the latest N policies")
@click.option("--json", "as_json", is_flag=True, help="print one JSON list")
def list_policies(limit: int, as_json: bool) -> None:
    """The policy registry: every trial, where it came from, whether it trades, and why (not).

    An online trial's figures are held-out ones, shown beside the champion's and each baseline's on
    the same bars; a round that followed a looped sample says so in its reason."""
    from shared.cli_support import load_settings_or_exit, running_stack
    from shared.storage import Database, policies

    settings = load_settings_or_exit()
    found = running_stack(settings, redis=False, database=True)

    async def run() -> list[dict[str, Any]]:
        db = await Database.connect(found.database, settings.storage, NETWORK_TIMEOUT_S)
        try:
            await db.migrate()
            return await policies.listing(db, limit)
        finally:
            await db.close()

    rows = [_row(r, policies.json_ready(r["metrics"])) for r in _read(found.database, run)]
    if as_json:
        click.echo(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Policies (held-out Sharpe: the policy's, the champion's and each baseline's)")
    for column in ("id", "algo", "source", "status", "markets", "held-out sharpe", "created", "reason"):
        table.add_column(column, no_wrap=column in ("source", "status"), overflow="fold")
    for r in rows:
        beside = [f"champion {_number(r['champion'].get('sharpe'))}"] if r["champion"] else []
        beside += [f"{name} {_number(b.get('sharpe'))}" for name, b in r["baselines"].items()]
        table.add_row(
            r["id"],
            r["algo"],
            r["source"],
            r["status"],
            " ".join(r["markets"]),
            "\n".join([_number(r["figures"].get("sharpe")), *beside]),
            r["created"][:19],
            r["reason"],
        )
    Console().print(table)


def _row(r: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """One policy as `policy list --json` prints it: `figures` are its own (held-out for an online trial),
    `champion` the champion's on the same bars (null: none then, or not an online trial) and `baselines`
    each baseline's there (name -> figures)."""
    own = {k: v for k, v in metrics.items() if k not in ("baselines", "champion")}
    return {
        "id": r["id"],
        "algo": r["algo"],
        "source": r["source"],
        "status": r["status"],
        "markets": r["markets"],
        "created": r["created_at"].isoformat(),
        "promoted_at": r["promoted_at"].isoformat() if r["promoted_at"] else None,
        "figures": own,
        "champion": metrics.get("champion"),
        "baselines": {
            name: {k: v for k, v in base.items() if k != "windows"}
            for name, base in (metrics.get("baselines") or {}).items()
        },
        "reason": r["reason"],
    }


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else ""


def _read(url: str, run: Any) -> Any:
    with reaching("PostgreSQL", url):
        return asyncio.run(run())
