"""Who may use the dashboard: the Host check (DNS rebinding), the token (a header, or a session cookie
from the login form: never a URL), and CSRF protection of every POST.

Without a configured token the dashboard binds loopback only and reads need nothing, but halt and
resume stay off. With one, every request needs ``Authorization: Bearer <token>`` or the session
cookie that ``POST /login`` sets; a POST also needs the ``X-CSRF-Token`` header equal to the csrf
cookie (double submit: another origin can neither read the cookie nor set the header) and, when the
browser sends one, an Origin of this host.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from shared.config import ConfigError, DashboardSettings

SESSION_COOKIE, CSRF_COOKIE, CSRF_HEADER = "tw_session", "tw_csrf", "X-CSRF-Token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
OPEN_PATHS = frozenset({"/login", "/healthz"})  # /healthz: compose's health check

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DashboardRefused(ConfigError):
    """The dashboard settings would expose it without protection."""


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def check_exposure(settings: DashboardSettings) -> None:
    if not is_loopback(settings.host) and settings.token is None:
        raise DashboardRefused(
            f"TRADEWIND_DASHBOARD__HOST is {settings.host}, off loopback, but TRADEWIND_DASHBOARD__TOKEN is not set;"
            " set a token or bind 127.0.0.1"
        )


def host_name(header: str) -> str:
    """The name in a Host header, without its port."""
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """The middleware and the token check, for one dashboard's settings."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.token = settings.token.get_secret_value().encode() if settings.token else None
        self.hosts = LOOPBACK_NAMES | {h.lower() for h in settings.allowed_hosts}
        if settings.host not in ("0.0.0.0", "::", ""):
            self.hosts |= {settings.host.lower()}
        self.sessions: set[str] = set()

    def token_ok(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token)

    def authenticated(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        bearer = request.headers.get("Authorization", "")
        if bearer.startswith("Bearer ") and self.token_ok(bearer.removeprefix("Bearer ")):
            return True
        return request.cookies.get(SESSION_COOKIE, "") in self.sessions

    def new_session(self) -> str:
        session = secrets.token_urlsafe(32)
        self.sessions.add(session)
        return session

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if host_name(request.headers.get("Host", "")).lower() not in self.hosts:
            raise web.HTTPMisdirectedRequest(
                text="unknown Host header (DNS rebinding guard); add the name to TRADEWIND_DASHBOARD__ALLOWED_HOSTS"
            )
        if "token" in request.query:
            raise web.HTTPBadRequest(
                text="a token never travels in a URL: use the login form or an Authorization header"
            )
        if request.method == "POST":
            self.check_csrf(request)
        if (
            request.path not in OPEN_PATHS
            and not request.path.startswith("/static/")
            and not self.authenticated(request)
        ):
            if request.path.startswith("/api/"):
                raise web.HTTPUnauthorized(text="dashboard token required (Authorization: Bearer <token>)")
            raise web.HTTPSeeOther("/login")
        response = await handler(request)
        if not request.cookies.get(CSRF_COOKIE) and isinstance(response, web.Response):
            response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), httponly=False, samesite="Strict", path="/")
        return response

    def check_csrf(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin and host_name(origin.split("://", 1)[-1]).lower() != host_name(request.headers["Host"]).lower():
            raise web.HTTPForbidden(text=f"cross-origin POST from {origin} refused")
        cookie, header = request.cookies.get(CSRF_COOKIE, ""), request.headers.get(CSRF_HEADER, "")
        if not cookie or not hmac.compare_digest(cookie.encode(), header.encode()):
            raise web.HTTPForbidden(text=f"CSRF check failed: send the {CSRF_COOKIE} cookie's value as {CSRF_HEADER}")
