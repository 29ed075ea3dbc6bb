"""What the chaos run counts, at the venue (the fake's own order log) against PostgreSQL and the decisions.

- duplicates: venue orders beyond the first for one decision (whatever their ids: every venue order
  is attributed to a decision by its client id, and one it cannot be attributed to is counted apart);
- lost fills: fills at the venue whose quantity is missing from PostgreSQL's ``fills``;
- orders while halted: venue orders accepted (the venue's clock) between the moment `tradewind halt`
  returned and the moment `tradewind resume` was run;
- decisions without outcome: decisions with no order row in PostgreSQL (neither executed nor refused).
"""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
from redis.exceptions import RedisError

from shared.bus import connect_redis
from shared.config import StorageSettings
from shared.schemas import RiskControl, decode, streams
from shared.storage import Database
from tests.executor.fake_venue import FakeBinance

if TYPE_CHECKING:
    from tests.chaos.run import Chaos

D = Decimal


async def migrate(dsn: str) -> None:
    db = await Database.connect(dsn, StorageSettings())
    try:
        await db.migrate()
    finally:
        await db.close()


async def heartbeat(redis_url: str) -> bool:
    redis = connect_redis(redis_url)
    try:
        entries = await redis.xrevrange(streams.RISK_CONTROL, count=20)
    except (RedisError, OSError):
        return False
    finally:
        await redis.aclose()
    messages = [m for _, f in entries for m in decode(f[streams.FIELD.encode()])]
    return any(isinstance(m, RiskControl) and m.action == "heartbeat" for m in messages)


async def query(dsn: str, sql: str, *args: object) -> list[asyncpg.Record] | None:
    """Rows, or None while PostgreSQL is unreachable (the run kills it)."""
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        return list(await conn.fetch(sql, *args))
    except (OSError, asyncpg.PostgresError):
        return None
    finally:
        await conn.close()


async def order_rows(dsn: str, cids: list[str]) -> dict[str, str | None]:
    """PostgreSQL's status of each order (None: no row), to read a lost fill's story in the logs."""
    rows = await query(dsn, "SELECT client_order_id, status FROM orders WHERE client_order_id = ANY($1)", cids) or []
    found = {r["client_order_id"]: r["status"] for r in rows}
    return {cid: found.get(cid) for cid in cids}


def decision_number(cid: str, tag: str) -> int | None:
    m = re.fullmatch(rf"chaos{tag}n(\d+)", cid)
    return int(m.group(1)) if m else None


async def filled_after(dsn: str, tag: str, n: int) -> bool:
    """Whether a decision made after decision ``n`` is filled in PostgreSQL (trading continued)."""
    rows = await query(
        dsn, "SELECT client_order_id FROM orders WHERE status = 'filled' AND client_order_id LIKE $1", f"chaos{tag}n%"
    )
    return bool(rows) and any((decision_number(r["client_order_id"], tag) or -1) > n for r in rows)


async def pg_fills(dsn: str) -> dict[str, Decimal] | None:
    """Quantity stored per venue order id (the first part of our fill ids)."""
    rows = await query(dsn, "SELECT fill_id, amount FROM fills WHERE exchange = 'binance'")
    if rows is None:
        return None
    out: dict[str, Decimal] = {}
    for r in rows:
        oid = r["fill_id"].split("-")[0]
        out[oid] = out.get(oid, D(0)) + r["amount"]
    return out


async def settled(fake: FakeBinance, dsn: str, tag: str, decisions: int) -> bool:
    """Every venue fill is in PostgreSQL, every decision has its order row (executed or refused) and none
    is still of unknown outcome."""
    stored = await pg_fills(dsn)
    open_rows = await query(dsn, "SELECT 1 FROM orders WHERE status IN ('submitted', 'unknown')")
    if stored is None or open_rows is None or len(await decided_rows(dsn, tag)) < decisions:
        return False
    executed = {str(oid): D(o["executedQty"]) for oid, o in fake.orders.items() if D(o["executedQty"])}
    return not open_rows and all(stored.get(oid, D(0)) >= qty for oid, qty in executed.items())


async def decided_rows(dsn: str, tag: str) -> set[str]:
    """The decisions' client ids that have an order row in PostgreSQL."""
    rows = await query(dsn, "SELECT client_order_id FROM orders WHERE client_order_id LIKE $1", f"chaos{tag}n%")
    return {r["client_order_id"] for r in rows or []}


async def summary(chaos: Chaos, dsn: str) -> dict[str, Any]:
    fake = chaos.fake
    decided = chaos.driver.by_id()
    per_decision: Counter[str] = Counter()
    unattributed = 0
    for o in fake.orders.values():
        if o["clientOrderId"] in decided:
            per_decision[o["clientOrderId"]] += 1
        else:
            unattributed += 1
    stored = await pg_fills(dsn) or {}
    venue_fills = lost_fills = over_stored = 0
    lost_qty = D(0)
    lost_ids: list[str] = []
    for oid, o in fake.orders.items():
        fills = o.get("_fills", [])
        venue_fills += len(fills)
        qty, have = D(o["executedQty"]), stored.get(str(oid), D(0))
        if have < qty:
            lost_fills += len(fills) if have == 0 else 1  # none stored: all of them; else at least one
            lost_qty += qty - have
            lost_ids.append(o["clientOrderId"])
        elif have > qty:
            over_stored += 1
    window = chaos.halt_window
    while_halted = []
    if window is not None:
        start, end = window
        while_halted = [o["clientOrderId"] for o in fake.orders.values() if start <= o["_accepted_ns"] <= end]
    statuses = await query(dsn, "SELECT status, count(*) AS n FROM orders GROUP BY status") or []
    reasons = (
        await query(dsn, "SELECT reason, count(*) AS n FROM orders WHERE status = 'rejected' GROUP BY reason") or []
    )
    halts = await query(dsn, "SELECT count(*) AS n FROM risk_events WHERE kind = 'halt'") or []
    return {
        "strategy_decisions": len(decided),
        "decisions_by_type": chaos.driver.summary()["by_type"],
        "venue_orders": len(fake.orders),
        "venue_fills": venue_fills,
        "duplicates": sum(n - 1 for n in per_decision.values()),
        "unattributed_venue_orders": unattributed,
        "lost_fills": lost_fills,
        "lost_fill_qty": str(lost_qty),
        "lost_fill_orders": await order_rows(dsn, lost_ids),  # client id -> PostgreSQL's status of it
        "venue_orders_over_stored": over_stored,
        "orders_while_halted": len(while_halted),
        "orders_while_halted_ids": while_halted,
        "halt_window_s": round((window[1] - window[0]) / 1e9, 2) if window and window[1] else None,
        "decisions_without_venue_order": len(decided) - len(per_decision),
        "decisions_without_outcome": len(set(decided) - await decided_rows(dsn, chaos.tag)),  # no row in PG
        "pg_orders_by_status": {r["status"]: r["n"] for r in statuses},
        "pg_rejections_by_reason": {r["reason"]: r["n"] for r in reasons},
        "halt_events": halts[0]["n"] if halts else None,
        "kills": {
            **{name: s.kills for name, s in chaos.services.items()},
            "redis": chaos.redis.kills,
            "postgres": chaos.pg.kills,
        },
        "starts": {name: s.starts for name, s in chaos.services.items()},
        "exit_codes": {name: s.exits for name, s in chaos.services.items()},  # -9: our kill; else the service's own
        "venue_requests": dict(Counter(r for r in fake.requests if not r.startswith("GET /api/v3/exchangeInfo"))),
        "stalls": chaos.stalls,
        "publish_retries": chaos.driver.publish_retries,
        "timeline": chaos.events,
    }
