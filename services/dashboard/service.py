"""The dashboard service (`tradewind dashboard`): pages over the bus and the records, live over
server-sent events, with halt/resume for the operator (services.dashboard.guard says who may do what).

Binds 127.0.0.1 unless told otherwise; off loopback it refuses to start without a token. Pages are
static HTML + JS (package data under ``static/``, uPlot vendored there): every value from the bus or
the database reaches the page as JSON and is put in the DOM as text, never as markup.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from services.dashboard import equity, views
from services.dashboard.control import Controls
from services.dashboard.guard import SESSION_COOKIE, DashboardRefused, Guard, check_exposure
from shared.config import DashboardSettings, Settings
from shared.metrics import ServiceMetrics
from shared.runtime import ServiceTasks, service_context
from shared.storage import Database

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
PAGES = ("overview", "strategies", "risk", "policies", "bus", "arbitrage")
REDIS_KEY: web.AppKey[Redis] = web.AppKey("redis", Redis)
DB_KEY: web.AppKey[Any] = web.AppKey("db")  # a Database, or None without PostgreSQL
SAMPLER_KEY: web.AppKey[views.StreamSampler] = web.AppKey("sampler", views.StreamSampler)
GUARD_KEY: web.AppKey[Guard] = web.AppKey("guard", Guard)
CONTROLS_KEY: web.AppKey[Any] = web.AppKey("controls")  # Controls, or None: halt/resume off
LIVE_S = 1.0  # server-sent events period
STREAM_METRICS_S = 5.0  # how often stream lengths and lag are exported to /metrics


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)  # timestamps and numerics as text


async def page_data(request: web.Request, page: str) -> dict[str, Any]:
    """What one page shows, as one JSON object (the same for the first load and every live update)."""
    app, q = request.app, request.query
    db, redis = app[DB_KEY], app[REDIS_KEY]
    filters = {k: q.get(k) for k in ("strategy", "exchange", "symbol")}
    if page == "overview":
        return {
            "state": await views.risk_state(redis),
            "equity": await views.equity(db),
            "positions": await views.table(db, "positions", {}),
            "balances": await views.table(db, "balances", {}),
            "open_orders": await views.table(db, "open_orders", {}),
        }
    if page == "strategies":
        return {name: await views.table(db, name, filters) for name in ("strategy_pnl", "orders", "fills")}
    if page == "risk":
        return {"state": await views.risk_state(redis), "risk_events": await views.table(db, "risk_events", {})}
    if page == "policies":
        return await views.policy_board(db, q.get("policy"))
    if page == "bus":
        sampler = app[SAMPLER_KEY]
        return {"streams": await sampler.sample(redis), "history": sampler.history}
    return {name: await views.table(db, name, {}) for name in ("arb_decisions", "arb_opportunities", "arb_executions")}


async def page(request: web.Request) -> web.Response:
    name = request.match_info.get("page", "overview")
    if name not in PAGES:
        raise web.HTTPNotFound(text=f"no page {name!r}; pages: {', '.join(PAGES)}")
    html = (STATIC / "page.html").read_text().replace("{{PAGE}}", name)
    return web.Response(text=html, content_type="text/html")


async def login_page(request: web.Request) -> web.Response:
    return web.Response(text=(STATIC / "login.html").read_text(), content_type="text/html")


async def login(request: web.Request) -> web.Response:
    guard = request.app[GUARD_KEY]
    body = await _json_body(request)
    if not guard.token_ok(str(body.get("token", ""))):
        raise web.HTTPUnauthorized(text="wrong token")
    response = web.json_response({"ok": True})
    response.set_cookie(SESSION_COOKIE, guard.new_session(), httponly=True, samesite="Strict", path="/")
    return response


async def api_page(request: web.Request) -> web.Response:
    name = request.match_info["page"]
    if name not in PAGES:
        raise web.HTTPNotFound(text=f"no page {name!r}; pages: {', '.join(PAGES)}")
    return web.json_response(await page_data(request, name), dumps=_dumps)


async def live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the page's data every second, until the browser goes away."""
    name = request.query.get("page", "overview")
    if name not in PAGES:
        raise web.HTTPNotFound(text=f"no page {name!r}")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    try:
        while True:
            await response.write(f"data: {_dumps(await page_data(request, name))}\n\n".encode())
            await asyncio.sleep(LIVE_S)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


async def streams_view(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SAMPLER_KEY].sample(request.app[REDIS_KEY]))


async def equity_view(request: web.Request) -> web.Response:
    return web.json_response(await views.equity(request.app[DB_KEY]))


async def state_view(request: web.Request) -> web.Response:
    return web.json_response(await views.risk_state(request.app[REDIS_KEY]))


async def table_view(request: web.Request) -> web.Response:
    name = request.match_info["table"]
    if name not in views.TABLE_READERS:
        raise web.HTTPNotFound(text=f"no table view {name!r}; known: {', '.join(views.TABLE_READERS)}")
    filters = {k: request.query.get(k) for k in ("strategy", "exchange", "symbol")}
    return web.json_response(await views.table(request.app[DB_KEY], name, filters), dumps=_dumps)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="expected a JSON body") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return body


async def control(request: web.Request) -> web.Response:
    """POST /api/halt or /api/resume, body ``{"token", "reason", "exchange"}``: the operator's kill switch."""
    controls: Controls | None = request.app[CONTROLS_KEY]
    if controls is None:
        raise web.HTTPForbidden(text="halt/resume from the dashboard need TRADEWIND_DASHBOARD__TOKEN set")
    body = await _json_body(request)
    if not request.app[GUARD_KEY].token_ok(str(body.get("token", ""))):
        raise web.HTTPUnauthorized(text="operator token required in the request body")
    action = request.match_info["action"]
    reason = str(body.get("reason") or f"dashboard {action}")[:200]
    exchange = str(body["exchange"]) if body.get("exchange") else None
    peer = request.remote or "?"
    sent = await controls.send(action, reason, exchange, f"dashboard:{peer}")
    log.warning(
        "dashboard %s (%s) by %s; halts now: %s; confirmed by %s; refused by %s; not confirmed by %s",
        action,
        reason,
        peer,
        [h["id"] for h in sent["halts"]],
        sent["confirmed_by"],
        sent["refused_by"],
        sent["not_confirmed"],
    )
    return web.json_response({"action": action, "exchange": exchange, "reason": reason, **sent})


async def health(request: web.Request) -> web.Response:
    await request.app[REDIS_KEY].ping()
    return web.json_response({"ok": True, "ts": time.time()})


async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/overview")


def create_app(
    redis: Redis, db: Database | None, settings: DashboardSettings, controls: Controls | None = None
) -> web.Application:
    check_exposure(settings)
    guard = Guard(settings)
    app = web.Application(middlewares=[guard.middleware])
    app[REDIS_KEY], app[DB_KEY], app[GUARD_KEY] = redis, db, guard
    app[SAMPLER_KEY] = views.StreamSampler()
    app[CONTROLS_KEY] = controls if settings.token is not None else None
    handlers: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
        ("GET", "/", root),
        ("GET", "/healthz", health),
        ("GET", "/login", login_page),
        ("POST", "/login", login),
        ("GET", "/api/live", live),
        ("GET", "/api/streams", streams_view),
        ("GET", "/api/equity", equity_view),
        ("GET", "/api/state", state_view),
        ("GET", "/api/page/{page}", api_page),
        ("POST", "/api/{action:halt|resume}", control),
        ("GET", "/api/{table}", table_view),
        ("GET", "/{page}", page),
    ]
    for method, path, handler in handlers:
        app.router.add_route(method, path, handler)
    app.router.add_static("/static/", STATIC)
    return app


async def main(settings: Settings) -> None:
    # Beside a running `tradewind up` too: PostgreSQL is optional and `tradewind up` migrates it.
    async with service_context(settings, "dashboard", database="optional", find_running=True, migrate=False) as svc:
        app = create_app(svc.redis, svc.db, settings.dashboard, Controls(settings, svc.db))
        runner = await start(app, settings.dashboard)
        tasks = ServiceTasks("dashboard")
        if svc.db is not None:
            tasks.start(equity.record(svc.redis, svc.db, settings.dashboard.equity_interval_s), "equity")
        tasks.start(export_streams(svc.redis, svc.metrics, STREAM_METRICS_S), "stream-metrics")
        try:
            await tasks.until(asyncio.Event().wait())  # until the runtime cancels us on SIGINT/SIGTERM
        finally:
            tasks.cancel()
            await tasks.wait(2.0)
            await runner.cleanup()


async def export_streams(redis: Redis, metrics: ServiceMetrics, every_s: float) -> None:
    """Stream lengths and consumer lag as Prometheus gauges (a sampler of its own: the pages' rates stay theirs)."""
    sampler = views.StreamSampler(keep=1)
    while True:
        metrics.record_streams(await sampler.sample(redis))
        await asyncio.sleep(every_s)


async def start(app: web.Application, settings: DashboardSettings) -> web.AppRunner:
    """Listen on the configured address; a port in use is a settings error, named."""
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
    return runner
