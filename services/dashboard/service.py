"""The dashboard service (`tradewind dashboard`): a read-only web view of the bus and the records.

Binds 127.0.0.1 unless told otherwise; off loopback it refuses to start without a token, and
then every request must carry it (``Authorization: Bearer <token>`` or ``?token=``).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from shared import monitor
from shared.config import ConfigError, DashboardSettings, Settings
from shared.runtime import service_context
from shared.storage import Database, policies

log = logging.getLogger(__name__)

REDIS_KEY: web.AppKey[Redis] = web.AppKey("redis", Redis)
DB_KEY: web.AppKey[Any] = web.AppKey("db")  # a Database, or None without PostgreSQL
SAMPLE_KEY: web.AppKey[dict[str, Any]] = web.AppKey("sample", dict)


async def _query(sql: str, db: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(sql)]


# Read-only views of the records; each query is bounded.
TABLE_QUERIES = {
    "orders": "SELECT client_order_id, exchange, symbol, side, order_type, amount::float8, price::float8, status,"
    " filled::float8, avg_price::float8, reason, updated_at FROM orders ORDER BY updated_at DESC LIMIT 50",
    "positions": "SELECT exchange, symbol, margin_mode, amount::float8, entry_price::float8, borrowed::float8,"
    " interest::float8, liquidation_price::float8, realized_pnl::float8, updated_at FROM positions"
    " WHERE amount <> 0 OR borrowed <> 0 ORDER BY exchange, symbol",
    "balances": "SELECT exchange, asset, free::float8, locked::float8, borrowed::float8, interest::float8, updated_at"
    " FROM balances ORDER BY exchange, asset",
    "risk_events": "SELECT ts, kind, severity, exchange, symbol, detail FROM risk_events ORDER BY ts DESC LIMIT 50",
}
TABLE_READERS: dict[str, Callable[[Any], Awaitable[list[dict[str, Any]]]]] = {
    **{name: functools.partial(_query, sql) for name, sql in TABLE_QUERIES.items()},
    "policies": functools.partial(policies.listing, limit=20),
}


class DashboardRefused(ConfigError):
    """The dashboard settings would expose it without protection."""


def check_exposure(settings: DashboardSettings) -> None:
    try:
        loopback = ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        loopback = settings.host == "localhost"
    if not loopback and settings.token is None:
        raise DashboardRefused(
            f"TRADEWIND_DASHBOARD__HOST is {settings.host}, off loopback, but TRADEWIND_DASHBOARD__TOKEN is not set;"
            " set a token or bind 127.0.0.1"
        )


def token_guard(settings: DashboardSettings) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = settings.token.get_secret_value().encode() if settings.token else None

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if expected is not None:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ") or request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), expected):
                raise web.HTTPUnauthorized(text="dashboard token required")
        return await handler(request)

    return guard


async def streams_view(request: web.Request) -> web.Response:
    redis = request.app[REDIS_KEY]
    last = request.app[SAMPLE_KEY]
    infos, at = await monitor.report(redis, 0.0, last.get("infos"), last.get("at"))
    last.update(infos=infos, at=at)
    return web.json_response(monitor.as_json(infos))


async def table_view(request: web.Request) -> web.Response:
    name = request.match_info["table"]
    if name not in TABLE_READERS:
        raise web.HTTPNotFound(text=f"no table view {name!r}; known: {', '.join(TABLE_READERS)}")
    db = request.app[DB_KEY]
    if db is None:
        return web.json_response([])
    try:
        rows = await TABLE_READERS[name](db)
    except asyncpg.UndefinedTableError:  # that area's migration has not run on this database
        rows = []
    return web.json_response(rows, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)  # timestamps and numerics as text


async def health(request: web.Request) -> web.Response:
    await request.app[REDIS_KEY].ping()
    return web.json_response({"ok": True, "ts": time.time()})


async def index(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


def create_app(redis: Redis, db: Database | None, settings: DashboardSettings) -> web.Application:
    check_exposure(settings)
    app = web.Application(middlewares=[token_guard(settings)])
    app[REDIS_KEY] = redis
    app[DB_KEY] = db
    app[SAMPLE_KEY] = {}
    app.router.add_get("/", index)
    app.router.add_get("/healthz", health)
    app.router.add_get("/api/streams", streams_view)
    app.router.add_get("/api/{table}", table_view)
    return app


async def main(settings: Settings) -> None:
    # Beside a running `tradewind up` too: it reads, so it neither needs PostgreSQL nor migrates it.
    async with service_context(settings, "dashboard", database="optional", find_running=True, migrate=False) as svc:
        await serve(create_app(svc.redis, svc.db, settings.dashboard), settings.dashboard)


async def serve(app: web.Application, settings: DashboardSettings) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise DashboardRefused(
            f"cannot listen on {settings.host}:{settings.port} ({exc.strerror});"
            " set TRADEWIND_DASHBOARD__PORT or TRADEWIND_DASHBOARD__ENABLED=false"
        ) from None
    log.info("dashboard on http://%s:%d/", settings.host, settings.port)
    try:
        await asyncio.Event().wait()  # until the runtime cancels us on SIGINT/SIGTERM
    finally:
        await runner.cleanup()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Tradewind</title>
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:1.5em;background:#0d1117;color:#c9d1d9}
h1{font-size:18px} h2{font-size:14px;margin-top:1.5em;color:#58a6ff}
table{border-collapse:collapse;width:100%} td,th{padding:2px 8px;border-bottom:1px solid #21262d;text-align:right}
td:first-child,th:first-child{text-align:left} th{color:#8b949e;font-weight:normal}
</style></head><body>
<h1>Tradewind</h1><div id="updated"></div>
<h2>Streams</h2><table id="streams"></table>
<h2>Risk events</h2><table id="risk_events"></table>
<h2>Positions</h2><table id="positions"></table>
<h2>Balances</h2><table id="balances"></table>
<h2>Orders</h2><table id="orders"></table>
<h2>Policies</h2><table id="policies"></table>
<script>
const q = new URLSearchParams(location.search).get("token");
const opts = q ? {headers: {Authorization: "Bearer " + q}} : {};
const esc = v => String(v ?? "").replace(/[&<>]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;"}[c]));
const fmt = v => typeof v === "number" ? (Number.isInteger(v) ? v : v.toFixed(4)) :
  (v && typeof v === "object" ? JSON.stringify(v) : v);
function fill(id, rows) {
  const t = document.getElementById(id);
  if (!rows.length) { t.innerHTML = "<tr><td>(none)</td></tr>"; return; }
  const cols = Object.keys(rows[0]);
  t.innerHTML = "<tr>" + cols.map(c => "<th>" + esc(c) + "</th>").join("") + "</tr>" +
    rows.map(r => "<tr>" + cols.map(c => "<td>" + esc(fmt(r[c])) + "</td>").join("") + "</tr>").join("");
}
async function refresh() {
  const s = await (await fetch("/api/streams", opts)).json();
  fill("streams", s.flatMap(x => (x.groups.length ? x.groups : [{}]).map((g, i) => ({
    stream: i ? "" : x.name, length: i ? "" : x.length, "msgs/s": i ? "" : Math.round(x.msgs_per_s ?? 0),
    "last entry (s)": i ? "" : x.last_entry_age_s, group: g.name ?? "-", pending: g.pending ?? "",
    lag: g.lag ?? ""}))));
  for (const t of ["risk_events", "positions", "balances", "orders", "policies"])
    fill(t, await (await fetch("/api/" + t, opts)).json());
  document.getElementById("updated").textContent = "updated " + new Date().toISOString();
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""
