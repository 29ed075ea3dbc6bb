"""The equity curve's recorder: samples the risk service's state into ``equity_snapshots`` so the
curve outlives every restart (of the dashboard, of risk, of the stack)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

import asyncpg
from redis.asyncio import Redis

from services.dashboard.views import risk_state
from shared.storage import Database

log = logging.getLogger(__name__)

INSERT = (
    "INSERT INTO equity_snapshots (ts, venue, equity, realized_pnl, unrealized_pnl) VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (venue, ts) DO NOTHING"
)


def snapshot_rows(state: dict[str, Any], at: datetime.datetime) -> list[tuple[Any, ...]]:
    """One row for the total ('*') and one per venue with a known equity; none before risk wrote a state."""
    if state.get("equity") is None:
        return []
    venues = state.get("venues", {})
    rows: list[tuple[Any, ...]] = [
        (
            at,
            "*",
            float(state["equity"]),
            sum(float(v.get("realized_pnl") or 0) for v in venues.values()),
            sum(float(v.get("unrealized_pnl") or 0) for v in venues.values()),
        )
    ]
    for name, v in sorted(venues.items()):
        if v.get("equity") is not None:
            rows.append(
                (at, name, float(v["equity"]), float(v.get("realized_pnl") or 0), float(v.get("unrealized_pnl") or 0))
            )
    return rows


async def record(redis: Redis, db: Database, every_s: float) -> None:
    """Sample every ``every_s`` until cancelled; a database without the table is waited for, not an error."""
    while True:
        rows = snapshot_rows(await risk_state(redis), datetime.datetime.now(datetime.UTC))
        if rows:
            try:
                async with db.pool.acquire() as conn:
                    await conn.executemany(INSERT, rows)
            except asyncpg.UndefinedTableError:
                log.debug("equity_snapshots does not exist yet (migration 0090 not applied)")
        await asyncio.sleep(every_s)
