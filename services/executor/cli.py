"""`tradewind status`: balances, positions, open orders, PnL, risk state and policy version.

It reads PostgreSQL, so it works while the stack runs and after it has stopped. The risk state
comes from the running risk service (Redis key ``tw:risk:state``) when Redis is reachable, and
from the durable halt set (PostgreSQL's ``halts``, see shared.halts) always.
"""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import click

from shared.cli_support import NETWORK_TIMEOUT_S, RuntimeFailure, load_settings_or_exit, reaching, running_stack
from shared.storage import policies

OPEN = ("new", "submitted", "accepted", "partially_filled")
REDIS_TIMEOUT_S = 2.0


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(int(value)) if value == value.to_integral() else str(value.normalize())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


async def collect(dsn: str, redis_url: str | None = None, *, cluster: bool = False) -> dict[str, Any]:
    """Everything `status` shows, as plain data (decimals as exact strings); ``redis_url`` adds live risk state
    (``cluster``: it names a Redis Cluster node)."""
    conn = await asyncpg.connect(dsn, timeout=NETWORK_TIMEOUT_S, command_timeout=NETWORK_TIMEOUT_S)
    try:
        data = await _collect(conn)
    finally:
        await conn.close()
    state = await read_risk_state(redis_url, cluster=cluster) if redis_url else None
    risk = data["risk"]
    risk["source"] = "redis" if state is not None else "postgres"
    risk["state"] = state
    if state is not None:
        risk["state_age_s"] = max(0.0, (time.time_ns() - state["ts"]) / 1e9)
        risk["halted"] = risk["halted"] or bool(state["halted"])
        for venue, v in state["venues"].items():
            if v["halted"]:
                risk["halted_venues"].setdefault(venue, v["halted"])
    return data


async def read_risk_state(redis_url: str, *, cluster: bool = False) -> dict[str, Any] | None:
    """The risk service's latest state, or None when Redis is unreachable or the service never wrote it."""
    from redis.exceptions import RedisError

    from shared.bus import connect_redis
    from shared.schemas import streams

    redis = connect_redis(redis_url, REDIS_TIMEOUT_S, cluster=cluster)
    try:
        raw = await asyncio.wait_for(redis.get(streams.RISK_STATE), REDIS_TIMEOUT_S)
    except (OSError, RedisError, TimeoutError):
        return None
    finally:
        await redis.aclose()
    return json.loads(raw) if raw else None


async def _rows(conn: asyncpg.Connection, sql: str) -> list[dict[str, Any]]:
    try:
        return [{k: _plain(v) for k, v in r.items()} for r in await conn.fetch(sql)]
    except asyncpg.UndefinedTableError:
        return []


async def _collect(conn: asyncpg.Connection) -> dict[str, Any]:
    marks = {
        (r["exchange"], r["symbol"]): r["price"]
        for r in await conn.fetch(
            "SELECT DISTINCT ON (exchange, symbol) exchange, symbol, price FROM fills"
            " ORDER BY exchange, symbol, ts DESC"
        )
    }
    positions = []
    unrealized: dict[str, Decimal] = {}
    realized: dict[str, Decimal] = {}
    for r in await conn.fetch("SELECT * FROM positions ORDER BY exchange, symbol, margin_mode"):
        mark = marks.get((r["exchange"], r["symbol"]))
        upnl = (mark - r["entry_price"]) * r["amount"] if mark is not None and r["amount"] else Decimal(0)
        quote = r["symbol"].partition("/")[2]
        key = f"{r['exchange']}:{quote}"
        unrealized[key] = unrealized.get(key, Decimal(0)) + upnl
        realized[key] = realized.get(key, Decimal(0)) + r["realized_pnl"]
        positions.append(
            {
                "exchange": r["exchange"],
                "symbol": r["symbol"],
                "margin_mode": r["margin_mode"],
                "amount": _plain(r["amount"]),
                "entry_price": _plain(r["entry_price"]),
                "mark": _plain(mark),
                "unrealized_pnl": _plain(upnl),
                "realized_pnl": _plain(r["realized_pnl"]),
                "borrowed": _plain(r["borrowed"]),
                "interest": _plain(r["interest"]),
                "liquidation_price": _plain(r["liquidation_price"]),
            }
        )
    balances = await _rows(
        conn,
        "SELECT exchange, wallet, asset, free, locked, borrowed, interest FROM balances"
        " WHERE free <> 0 OR locked <> 0 OR borrowed <> 0 OR interest <> 0"
        " ORDER BY exchange, wallet, asset",
    )
    open_orders = await _rows(
        conn,
        "SELECT client_order_id, exchange, symbol, side, order_type, amount, price,"
        " filled, status, strategy FROM orders WHERE status IN"
        f" {OPEN!r} ORDER BY created_at",
    )
    counts = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM fills) AS fills"
    )
    by_status = {r["status"]: r["n"] for r in await conn.fetch("SELECT status, count(*) AS n FROM orders GROUP BY 1")}
    by_strategy = {
        r["strategy"] or "(none)": r["n"]
        for r in await conn.fetch(
            "SELECT o.strategy, count(*) AS n FROM fills f JOIN orders o USING (client_order_id) GROUP BY 1 ORDER BY 1"
        )
    }
    active = await conn.fetch("SELECT id, cause, exchange, reason, issued_by, ts FROM halts ORDER BY id")
    last = await conn.fetchrow(
        "SELECT kind, ts, exchange, detail::text AS detail FROM risk_events"
        " WHERE kind IN ('halt', 'resume', 'drawdown_halt', 'drawdown_reset') ORDER BY ts DESC LIMIT 1",
    )
    recent = await conn.fetchval("SELECT count(*) FROM risk_events WHERE ts > now() - interval '1 hour'")
    promoted = await policies.latest_promoted(conn)
    policy = [{k: _plain(v) for k, v in promoted.items()}] if promoted else []
    book = [  # which policy trades which markets (shared.storage.policies.promoted_per_market)
        {
            "id": r["id"],
            "algo": r["algo"],
            "markets": [{"exchange": e, "symbol": s} for e, s in r["markets"]],
            "promoted_at": _plain(r["promoted_at"]),
        }
        for r in await policies.promoted_per_market(conn)
    ]
    return {
        "balances": balances,
        "positions": positions,
        "open_orders": open_orders,
        "pnl": {
            "realized": {k: _plain(v) for k, v in sorted(realized.items())},
            "unrealized": {k: _plain(v) for k, v in sorted(unrealized.items())},
        },
        "orders": counts["orders"],
        "fills": counts["fills"],
        "orders_by_status": by_status,
        "fills_by_strategy": by_strategy,
        "risk": {**halt_state(active, last), "events_last_hour": recent},
        "policy": policy[0] if policy else None,
        "policies_active": book,
    }


def halt_state(active: Sequence[Mapping[str, Any]], last: Mapping[str, Any] | None) -> dict[str, Any]:
    """Halt state from the durable halt set (shared.halts), and the latest switch for context."""
    every = [h["reason"] for h in active if h["exchange"] is None]
    venues: dict[str, str] = {}
    for h in active:
        if h["exchange"] is not None:
            venues[h["exchange"]] = "; ".join(filter(None, (venues.get(h["exchange"]), h["reason"])))
    switch = {**last, "detail": json.loads(last["detail"] or "{}")} if last else None
    return {
        "halted": bool(every),
        "halted_reason": "; ".join(every),
        "halted_venues": venues,
        "halts": [{k: _plain(v) for k, v in h.items()} for h in active],
        "last_switch": {k: _plain(v) for k, v in switch.items()} if switch else None,
    }


def render(status: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()

    def table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
        t = Table(title=title, title_justify="left")
        for c in columns:
            t.add_column(c, justify="right" if c not in ("exchange", "symbol", "asset", "wallet", "side") else "left")
        for r in rows:
            t.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in columns))
        console.print(t)

    table("Balances", status["balances"], ["exchange", "wallet", "asset", "free", "locked", "borrowed", "interest"])
    table(
        "Positions",
        status["positions"],
        [
            "exchange",
            "symbol",
            "margin_mode",
            "amount",
            "entry_price",
            "mark",
            "unrealized_pnl",
            "realized_pnl",
            "borrowed",
            "interest",
            "liquidation_price",
        ],
    )
    table(
        "Open orders",
        status["open_orders"],
        ["client_order_id", "exchange", "symbol", "side", "order_type", "amount", "price", "filled", "status"],
    )
    pnl = status["pnl"]
    console.print(f"PnL realized {pnl['realized'] or '-'}  unrealized {pnl['unrealized'] or '-'}")
    console.print(f"orders {status['orders']} {status['orders_by_status']}  fills {status['fills']}")
    risk = status["risk"]
    venues = ", ".join(f"{v} ({why})" for v, why in risk["halted_venues"].items())
    console.print(
        f"risk: {'HALTED' if risk['halted'] else 'trading'}{'; halted venues: ' + venues if venues else ''};"
        f" {risk['events_last_hour']} events in the last hour"
    )
    state = risk["state"]
    if state is None:
        console.print("risk service: no live state (Redis unreachable or risk not running); halts from PostgreSQL")
    else:
        console.print(
            f"risk service ({risk['state_age_s']:.1f}s ago): equity {state['equity']:.2f}, drawdown"
            f" {state['drawdown_intraday']:.2%} today / {state['drawdown_total']:.2%} total,"
            f" crashes {state['crashes'] or 'none'}, hedges {state['hedges'] or 'none'}"
        )
        table(
            "Risk per venue",
            [
                {"exchange": k, **{f: round(x, 2) if isinstance(x, float) else x for f, x in v.items()}}
                for k, v in state["venues"].items()
            ],
            ["exchange", "equity", "gross_exposure", "net_exposure", "margin_level", "data_age_s", "halted"],
        )
    policy = status["policy"]
    console.print(f"policy: {policy['id'] + ' (' + policy['algo'] + ')' if policy else 'none promoted'}")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of tables")
def status(as_json: bool) -> None:
    """Balances, positions (incl. margin), open orders, PnL, order/fill totals, risk state, policy version."""
    settings = load_settings_or_exit()
    found = running_stack(settings, redis=False)  # a stopped stack still has its records
    dsn, redis_url = found.database_url, found.redis_url
    stopped_stack = None
    if not dsn:
        # The stack has stopped: start its embedded PostgreSQL just long enough to read it.
        from shared.embedded import EmbeddedPostgres

        data_dir = settings.var_dir / "postgres"
        if not (data_dir / "PG_VERSION").exists():
            raise RuntimeFailure(
                f"no DATABASE_URL set, no running `tradewind up` and no embedded database in {data_dir}"
            )
        stopped_stack = EmbeddedPostgres(data_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            dsn = stopped_stack.start()
    try:
        with reaching("PostgreSQL", dsn):
            data = asyncio.run(collect(dsn, redis_url, cluster=settings.bus.cluster))
    finally:
        if stopped_stack is not None:
            stopped_stack.stop()
    if as_json:
        click.echo(json.dumps(data))
    else:
        render(data)
