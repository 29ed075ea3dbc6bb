"""The policy registry: the `policies` table is read and written here, and nowhere else.

The trainer records every trial and promotes; the executor follows the promoted policy; the CLI
and the dashboard list them. A promoted policy travels as ``<dir>#sha256=<hex>``: the executor
loads only a weights file that hashes to what was recorded at promotion.

A policy trades a market set (`markets`: a sorted jsonb list of {exchange, symbol}); a single-market
policy's set has one market, and also fills the `exchange` and `symbol` columns. The book the executor
trades is `promoted_per_market`: for each market set its latest promoted policy, less those a later
promotion on any of their markets replaced (one policy trades a market at a time).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from shared.bus import Bus
from shared.rl.weights import WEIGHTS_FILE, file_sha256, with_sha
from shared.schemas import PolicyUpdate, PolicyVerdict
from shared.schemas.streams import POLICY_UPDATES
from shared.storage.db import Database
from shared.storage.writer import ns_to_datetime

Market = tuple[str, str]  # (exchange, symbol)


def market_set(markets: Iterable[Sequence[str]]) -> tuple[Market, ...]:
    """The canonical form of a market set: (exchange, symbol) pairs, sorted, each once."""
    return tuple(sorted({(str(m[0]), str(m[1])) for m in markets}))


def markets_of(exchange: str | None, symbol: str | None, markets: Iterable[Sequence[str]] | None) -> tuple[Market, ...]:
    """The market set of a policy named either way: `markets`, or its one (exchange, symbol)."""
    if markets:
        return market_set(markets)
    return ((exchange, symbol),) if exchange and symbol else ()


def markets_json(markets: Sequence[Market]) -> str:
    return json.dumps([{"exchange": e, "symbol": s} for e, s in markets])


def parse_markets(value: Any) -> tuple[Market, ...]:
    """The `markets` column (jsonb, text or decoded) as a market set."""
    items = json.loads(value) if isinstance(value, str) else value or []
    return market_set((m["exchange"], m["symbol"]) for m in items)


class PolicyRegistry:
    """Every trial recorded; the promoted one, and every online round's verdict, published on
    `policy:updates` once the rows are durable."""

    def __init__(self, db: Database, bus: Bus | None = None) -> None:
        self.db = db
        self.bus = bus

    async def record_trial(
        self,
        algo: str,
        checkpoint_uri: str,
        metrics: dict[str, Any],
        hyperparameters: dict[str, Any],
        data_from_ns: int,
        data_to_ns: int,
        exchange: str | None = None,
        symbol: str | None = None,
        source: str = "online",
        markets: Sequence[Sequence[str]] | None = None,
    ) -> str:
        """Insert one trial, with the sha256 of its weights-only actor file when it has one; return its id.

        A portfolio policy gives its `markets` (its `exchange`/`symbol` columns stay empty); a
        single-market one either its (exchange, symbol) or a one-market list."""
        policy_id = f"{algo}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        trades = markets_of(exchange, symbol, markets)
        if len(trades) == 1:
            exchange, symbol = trades[0]
        await self.db.execute(
            "INSERT INTO policies (id, algo, exchange, symbol, data_from, data_to, metrics, checkpoint_uri,"
            " hyperparameters, weights_sha256, source, markets)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9::jsonb, $10, $11, $12::jsonb)",
            policy_id,
            algo,
            exchange if len(trades) <= 1 else None,
            symbol if len(trades) <= 1 else None,
            ns_to_datetime(data_from_ns),
            ns_to_datetime(data_to_ns),
            json.dumps(json_ready(metrics)),
            checkpoint_uri,
            json.dumps(json_ready(hyperparameters)),
            weights_digest(checkpoint_uri),
            source,
            markets_json(trades),
        )
        return policy_id

    async def verdict(self, policy_ids: list[str], reason: str) -> None:
        """Why these trials were (not) promoted: `tradewind policy list` shows it."""
        await self.db.execute("UPDATE policies SET reason = $2 WHERE id = ANY($1::text[])", policy_ids, reason)

    async def note(self, policy_ids: list[str], note: str) -> None:
        """Add a note to these trials' recorded reason (e.g. why no round followed them)."""
        await self.db.execute(
            "UPDATE policies SET reason = CASE WHEN reason = '' THEN $2 ELSE reason || '; ' || $2 END"
            " WHERE id = ANY($1::text[])",
            policy_ids,
            note,
        )

    async def announce(self, verdict: PolicyVerdict) -> None:
        """Publish a round's verdict on `policy:updates` (after its trials' rows are written)."""
        if self.bus is not None:
            await self.bus.publish(POLICY_UPDATES, verdict)

    async def trial_count(
        self, exchange: str | None = None, symbol: str | None = None, markets: Sequence[Sequence[str]] | None = None
    ) -> int:
        """Trials recorded for this market set (one market: `exchange`, `symbol`)."""
        rows = await self.db.fetch(
            "SELECT count(*) AS n FROM policies WHERE markets = $1::jsonb",
            markets_json(markets_of(exchange, symbol, markets)),
        )
        return int(rows[0]["n"])

    async def champion(
        self, exchange: str | None = None, symbol: str | None = None, markets: Sequence[Sequence[str]] | None = None
    ) -> dict[str, Any] | None:
        """The most recently promoted policy for this market set (one market: `exchange`, `symbol`), or None."""
        rows = await self.db.fetch(
            "SELECT id, algo, metrics, checkpoint_uri FROM policies WHERE promoted_at IS NOT NULL"
            " AND markets = $1::jsonb ORDER BY promoted_at DESC LIMIT 1",
            markets_json(markets_of(exchange, symbol, markets)),
        )
        if not rows:
            return None
        row = dict(rows[0])
        row["metrics"] = json.loads(row["metrics"])
        return row

    async def latest_promoted(self) -> dict[str, Any] | None:
        return await latest_promoted(self.db)

    async def promote(
        self,
        policy_id: str,
        algo: str,
        checkpoint_uri: str,
        metrics: dict[str, Any],
        exchange: str | None = None,
        symbol: str | None = None,
        markets: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """Mark the trial promoted, then announce it (after the row is durable) as `<dir>#sha256=<hex>`:
        the executor loads only weights that hash to what the registry recorded. The update names the
        policy's market set (`markets`; and `exchange`/`symbol` when it is one market)."""
        trades = markets_of(exchange, symbol, markets)
        if len(trades) == 1:
            exchange, symbol = trades[0]
        elif trades:
            exchange = symbol = None
        rows = await self.db.fetch(
            "UPDATE policies SET promoted_at = now(), weights_sha256 = coalesce(weights_sha256, $2)"
            " WHERE id = $1 RETURNING weights_sha256",
            policy_id,
            weights_digest(checkpoint_uri),
        )
        sha256 = rows[0]["weights_sha256"] if rows else None
        if self.bus is not None:
            numbers = {
                k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
            }
            update = PolicyUpdate(
                policy_id=policy_id,
                algo=algo,
                checkpoint_uri=with_sha(checkpoint_uri, sha256),
                ts=time.time_ns(),
                exchange=exchange,
                symbol=symbol,
                metrics=numbers,
                markets=list(trades),
            )
            await self.bus.publish(POLICY_UPDATES, update)


def weights_digest(checkpoint_uri: str) -> str | None:
    """sha256 of the checkpoint's weights-only actor file, or None when it has none."""
    file = Path(checkpoint_uri) / WEIGHTS_FILE
    return file_sha256(file) if file.is_file() else None


def json_ready(value: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python numbers, curves dropped."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


async def latest_promoted(db: Database | asyncpg.Connection) -> dict[str, Any] | None:
    """The most recently promoted policy (id, algo, exchange, symbol, checkpoint_uri), or None; its
    checkpoint_uri carries the weights' recorded sha256 (`<dir>#sha256=<hex>`) for the loader."""
    rows = await db.fetch(
        "SELECT id, algo, exchange, symbol, checkpoint_uri, weights_sha256, promoted_at FROM policies"
        " WHERE promoted_at IS NOT NULL ORDER BY promoted_at DESC LIMIT 1"
    )
    if not rows:
        return None
    row = dict(rows[0])
    row["checkpoint_uri"] = with_sha(row["checkpoint_uri"], row.pop("weights_sha256"))
    return row


async def count(db: Database) -> int:
    """How many trials were ever recorded (what the deflated Sharpe ratio discounts for)."""
    rows = await db.fetch("SELECT count(*) AS n FROM policies")
    return int(rows[0]["n"])


LISTING = (
    "SELECT id, algo, source, exchange, symbol, markets, metrics, reason, checkpoint_uri, weights_sha256,"
    " created_at, promoted_at FROM policies ORDER BY coalesce(promoted_at, created_at) DESC LIMIT $1"
)


async def promoted_per_market(db: Database | asyncpg.Connection) -> list[dict[str, Any]]:
    """The book of policies that trade now, oldest promotion first: for each market set its latest promoted
    policy, unless a later promotion trades one of its markets. Each row: id, algo, markets (a market set),
    exchange, symbol, checkpoint_uri (with the weights' recorded sha256, `<dir>#sha256=<hex>`), promoted_at."""
    rows = await db.fetch(
        "SELECT DISTINCT ON (markets) id, algo, markets, exchange, symbol, checkpoint_uri, weights_sha256,"
        " promoted_at FROM policies WHERE promoted_at IS NOT NULL AND markets <> '[]'::jsonb"
        " ORDER BY markets, promoted_at DESC"
    )
    book: list[dict[str, Any]] = []
    taken: set[Market] = set()
    for r in sorted(rows, key=lambda r: r["promoted_at"], reverse=True):  # the latest promotion wins a market
        row = dict(r)
        row["markets"] = parse_markets(row["markets"])
        if taken.isdisjoint(row["markets"]):
            taken.update(row["markets"])
            row["checkpoint_uri"] = with_sha(row["checkpoint_uri"], row.pop("weights_sha256"))
            book.append(row)
    return book[::-1]


def status(row: dict[str, Any]) -> str:
    """promoted (trading now on its markets), retired (promoted once, since replaced), rejected (judged and
    not promoted), candidate (not judged yet)."""
    if row["promoted_at"] is not None:
        return "promoted" if row["current"] else "retired"
    return "rejected" if row["reason"] else "candidate"


async def listing(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    """The latest policies (promoted or created last first): id, algo, source, status, market, created,
    figures (metrics), reason."""
    out = []
    trading = {r["id"] for r in await promoted_per_market(db)}
    for r in await db.fetch(LISTING, limit):
        row = dict(r)
        row["metrics"] = json.loads(row["metrics"]) if isinstance(row["metrics"], str) else row["metrics"]
        row["current"] = row["id"] in trading
        row["status"] = status(row)
        row["markets"] = [f"{e}:{s}" for e, s in parse_markets(row["markets"])]
        del row["current"]
        out.append(row)
    return out
