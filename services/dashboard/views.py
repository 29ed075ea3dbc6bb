"""The dashboard's JSON views (``/api/...``, for the pages and for scripts): bounded, read-only queries."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from redis.asyncio import Redis

from shared import monitor
from shared.schemas import streams
from shared.storage import policies


async def _query(sql: str, db: Any, *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(sql, *args)]


ORDER_FILTER = (
    " WHERE ($1::text IS NULL OR strategy = $1) AND ($2::text IS NULL OR exchange = $2)"
    " AND ($3::text IS NULL OR symbol = $3)"
)
TABLE_QUERIES = {
    "orders": "SELECT client_order_id, strategy, exchange, symbol, side, order_type, amount::float8, price::float8,"
    " status, filled::float8, avg_price::float8, reason, updated_at FROM orders"
    + ORDER_FILTER
    + " ORDER BY updated_at DESC LIMIT 100",
    "open_orders": "SELECT client_order_id, strategy, exchange, symbol, side, order_type, amount::float8,"
    " price::float8, status, filled::float8, updated_at FROM orders"
    " WHERE status IN ('accepted', 'partially_filled') ORDER BY updated_at DESC LIMIT 100",
    "fills": "SELECT f.ts, o.strategy, f.exchange, f.symbol, f.side, f.price::float8, f.amount::float8, f.fee::float8,"
    " f.fee_asset, f.liquidity, f.client_order_id FROM fills f JOIN orders o USING (client_order_id)"
    " WHERE ($1::text IS NULL OR o.strategy = $1) AND ($2::text IS NULL OR f.exchange = $2)"
    " AND ($3::text IS NULL OR f.symbol = $3) ORDER BY f.ts DESC LIMIT 100",
    # net cash flow of each strategy's fills in their quote asset, fees in the quote asset included
    "strategy_pnl": "SELECT o.strategy, f.exchange, f.symbol, count(*) AS fills,"
    " sum(CASE WHEN f.side = 'sell' THEN f.price * f.amount ELSE -f.price * f.amount END)::float8 AS cash_flow,"
    " sum(CASE WHEN f.side = 'buy' THEN f.amount ELSE -f.amount END)::float8 AS net_amount,"
    " sum(CASE WHEN f.fee_asset = split_part(f.symbol, '/', 2) THEN f.fee ELSE 0 END)::float8 AS quote_fees"
    " FROM fills f JOIN orders o USING (client_order_id) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    "positions": "SELECT exchange, symbol, margin_mode, amount::float8, entry_price::float8, borrowed::float8,"
    " interest::float8, liquidation_price::float8, realized_pnl::float8, updated_at FROM positions"
    " WHERE amount <> 0 OR borrowed <> 0 ORDER BY exchange, symbol",
    "balances": "SELECT exchange, asset, free::float8, locked::float8, borrowed::float8, interest::float8, updated_at"
    " FROM balances ORDER BY exchange, asset",
    "risk_events": "SELECT ts, kind, severity, exchange, symbol, detail FROM risk_events ORDER BY ts DESC LIMIT 100",
    "arb_executions": "SELECT execution_id, strategy, exchange, assets, mode, status, net_return, expected_profit,"
    " realized_profit, latency_us, failure, orders, finished_at FROM arb_executions ORDER BY started_at DESC LIMIT 50",
    # every opportunity an arbitrage strategy saw: fired (execution_id set) or why not, and its detected edge
    "arb_opportunities": "SELECT detected_at, strategy, exchange, assets, decision, net_return, gross_return,"
    " expected_profit, start_amount, execution_id, legs FROM arb_opportunities ORDER BY detected_at DESC LIMIT 50",
    "arb_decisions": "SELECT strategy, decision, count(*) AS seen, avg(net_return)::float8 AS avg_net_return,"
    " sum(expected_profit)::float8 AS expected_profit FROM arb_opportunities"
    " WHERE detected_at > now() - interval '24 hours' GROUP BY 1, 2 ORDER BY 1, 3 DESC",
}
FILTERED = frozenset({"orders", "fills"})
TABLE_READERS: dict[str, Callable[..., Awaitable[list[dict[str, Any]]]]] = {
    **{name: functools.partial(_query, sql) for name, sql in TABLE_QUERIES.items()},
    "policies": functools.partial(policies.listing, limit=50),
}
EQUITY = (
    "SELECT extract(epoch FROM ts)::float8 AS t, venue, equity FROM equity_snapshots"
    " WHERE ts > now() - make_interval(secs => $1) ORDER BY ts"
)


async def table(db: Any, name: str, filters: dict[str, str | None]) -> list[dict[str, Any]]:
    """Rows of one view ([] without a database, or before its area's migration ran)."""
    if db is None:
        return []
    args = [filters.get(k) or None for k in ("strategy", "exchange", "symbol")] if name in FILTERED else []
    try:
        return await TABLE_READERS[name](db, *args)
    except asyncpg.UndefinedTableError:
        return []


async def policy_board(db: Any, selected: str | None) -> dict[str, Any]:
    """The registry leaderboard, and the held-out equity curve of one policy: ``selected``, else the
    latest listed that has one. An online round stores the curve in the trial's figures (``equity``,
    ``[unix s, equity / start]`` pairs); the table leaves it out, one curve goes to the page."""
    rows = await table(db, "policies", {})
    curves = {r["id"]: r["metrics"].pop("equity") for r in rows if "equity" in (r.get("metrics") or {})}
    pick = selected if selected in curves else next(iter(curves), None)
    points = curves.get(pick, []) if pick else []
    curve = {"policy": pick, "t": [p[0] for p in points], "equity": [p[1] for p in points]}
    return {"policies": rows, "with_curves": list(curves), "equity": curve}


async def equity(db: Any, window_s: float = 7 * 86400) -> dict[str, Any]:
    """The recorded equity curve as aligned columns: ``{"t": [...], "series": {venue: [...]}}`` ('*' total)."""
    if db is None:
        return {"t": [], "series": {}}
    try:
        rows = await db.fetch(EQUITY, window_s)
    except asyncpg.UndefinedTableError:
        return {"t": [], "series": {}}
    times = sorted({r["t"] for r in rows})
    index = {t: i for i, t in enumerate(times)}
    series: dict[str, list[float | None]] = {}
    for r in rows:
        series.setdefault(r["venue"], [None] * len(times))[index[r["t"]]] = r["equity"]
    return {"t": times, "series": dict(sorted(series.items()))}


async def risk_state(redis: Redis) -> dict[str, Any]:
    """The risk service's latest state (``tw:risk:state``), or {} before it wrote one."""
    raw = await redis.get(streams.RISK_STATE)
    return json.loads(raw) if raw else {}


class StreamSampler:
    """`tradewind streams` data (rates need the previous sample) and a short history for the bus charts."""

    def __init__(self, keep: int = 300) -> None:
        self.infos: Any = None
        self.at: Any = None
        self.keep = keep
        self.history: list[dict[str, Any]] = []

    async def sample(self, redis: Redis) -> list[dict[str, Any]]:
        self.infos, self.at = await monitor.report(redis, 0.0, self.infos, self.at)
        rows: list[dict[str, Any]] = monitor.as_json(self.infos)
        point = {
            "t": time.time(),
            "rate": {s["name"]: s.get("msgs_per_s") or 0.0 for s in rows},
            "lag": {s["name"]: max([g.get("lag") or 0 for g in s["groups"]] or [0]) for s in rows},
        }
        self.history = [*self.history, point][-self.keep :]
        return rows
