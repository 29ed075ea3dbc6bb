"""`tradewind up`: servers (embedded when no URL is set), migrations, then the supervised services.

Embedded servers are supervised too: found dead, they are started again in place, under the
services' restart rules, and the services reconnect. The embedded Redis has one ACL user per role
(shared.embedded.REDIS_ROLES): each service gets a REDIS_URL with its own user, the operator's URL
goes to ``<var_dir>/run/redis.url`` (mode 0600) for the CLI; the passwords are generated once per
var dir (``<var_dir>/redis/passwords``, mode 0600) and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.config import Settings, mask_url
from shared.embedded import OPERATOR, EmbeddedPostgres, EmbeddedRedis, role_passwords, write_private
from shared.schemas import streams
from shared.signing import SIGNING_SERVICES, stack_keys
from shared.stack_events import give_up_reporter
from shared.storage import Database
from shared.supervisor import ServerSpec, ServiceSpec, Supervisor, python_module

log = logging.getLogger(__name__)

# Start order; a service whose `services.<name>.service` module does not exist yet is skipped.
SERVICES = ("ingest", "executor", "risk", "trainer", "dashboard", "alerts")


def available_services() -> list[str]:
    return [name for name in SERVICES if importlib.util.find_spec(f"services.{name}.service") is not None]


def enabled_services(settings: Settings) -> list[str]:
    """The available services, less those whose settings section says ``enabled = false`` (the dashboard's)."""
    return [n for n in available_services() if getattr(getattr(settings, n, None), "enabled", True) is not False]


@dataclass
class Servers:
    """The Redis and PostgreSQL the stack uses: the configured ones, or embedded ones under var_dir."""

    redis_url: str  # the operator's (the stack's own) URL
    database_url: str
    embedded: list[EmbeddedRedis | EmbeddedPostgres] = field(default_factory=list)
    run_dir: Path | None = None

    def service_redis_url(self, role: str) -> str:
        """The REDIS_URL for a service: its own ACL user on the embedded Redis, else the configured URL."""
        for server in self.embedded:
            if isinstance(server, EmbeddedRedis):
                return server.user_url(role)
        return self.redis_url

    def supervised(self) -> list[ServerSpec]:
        """The embedded servers, for the supervisor to restart in place when they die."""
        return [ServerSpec(s.name, s.start, s.alive, s.exit_description) for s in self.embedded]

    @classmethod
    def start(cls, settings: Settings) -> Servers:
        embedded: list[EmbeddedRedis | EmbeddedPostgres] = []
        try:
            redis_url = settings.redis_url
            if not redis_url:
                directory = settings.var_dir / "redis"
                server = EmbeddedRedis(directory, passwords=role_passwords(directory / "passwords"))
                embedded.append(server)
                server.start()
                redis_url = server.user_url(OPERATOR)
            if settings.database_url:
                database_url = settings.database_url.get_secret_value()
            else:
                pg = EmbeddedPostgres(settings.var_dir / "postgres")
                embedded.append(pg)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
                    database_url = pg.start()
        except BaseException:
            for s in reversed(embedded):
                s.stop()
            raise
        servers = cls(redis_url, database_url, embedded)
        if embedded:  # so that `tradewind streams` in another terminal finds them (shared.runtime.running_url)
            servers.run_dir = settings.var_dir / "run"
            servers.run_dir.mkdir(parents=True, exist_ok=True)
            write_private(servers.run_dir / "redis.url", redis_url)  # holds the operator's password
            write_private(servers.run_dir / "database.url", database_url)
        return servers

    def stop(self) -> None:
        if self.run_dir:
            for name in ("redis.url", "database.url"):
                (self.run_dir / name).unlink(missing_ok=True)
        for server in reversed(self.embedded):
            server.stop()


async def stream_counters(redis_url: str, cluster: bool = False) -> dict[str, dict[str, int]]:
    """Entries and messages written per stream, from the publishers' counters (every node's, on a cluster)."""
    from shared.bus import connect_redis

    redis = connect_redis(redis_url, cluster=cluster)
    out: dict[str, dict[str, int]] = {}
    try:
        async for raw_key in redis.scan_iter(match=f"{streams.STATS_PREFIX}*", count=1000):
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            stream = streams.stats_stream(key)
            if stream is not None:
                fields = await redis.hgetall(key)
                out[stream] = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in fields.items()}
    finally:
        await redis.aclose()
    return dict(sorted(out.items()))


async def up(settings: Settings, duration: float | None, only: list[str] | None = None) -> dict[str, Any]:
    """Run the stack until SIGINT/SIGTERM or ``duration``; return the summary."""
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    requested = asyncio.Event()  # Ctrl-C while the servers start: a clean stop once they are up, not a traceback
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, requested.set)
    servers = Servers.start(settings)
    try:
        db = await Database.connect(servers.database_url, settings.storage)
        try:
            applied = await db.migrate()
        finally:
            await db.close()
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        names = [n for n in enabled_services(settings) if only is None or n in only]
        log.info(
            "mode %s; Redis %s; services: %s",
            settings.mode,
            mask_url(servers.redis_url),
            ", ".join(names) or "(none yet)",
        )
        control_keys = stack_keys(settings.control, settings.var_dir)  # generated once per var dir if unset
        specs = [
            ServiceSpec(
                name,
                python_module(f"services.{name}"),
                {
                    "REDIS_URL": servers.service_redis_url(name),
                    "DATABASE_URL": servers.database_url,
                    "TRADEWIND_MODE": settings.mode,
                    "TRADEWIND_SERVICE_NAME": name,
                    "TRADEWIND_VAR_DIR": str(settings.var_dir),
                    "TRADEWIND_METRICS__PORT": str(settings.metrics.port + i if settings.metrics.port else 0),
                    **(control_keys if name in SIGNING_SERVICES else {}),  # risk:control's HMAC keys
                },
            )
            for i, name in enumerate(names)
        ]
        supervisor = Supervisor(
            specs,
            settings.supervisor,
            servers=servers.supervised(),
            on_give_up=give_up_reporter(servers.redis_url, settings.bus),  # an alert (services.alerts)
        )
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, supervisor.stop)  # replaces the start-up handler
        if requested.is_set():
            supervisor.stop()
        services = await supervisor.run(duration)
        counters = {}
        with contextlib.suppress(Exception):
            counters = await stream_counters(servers.redis_url, settings.bus.cluster)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        servers.stop()
    return {
        "event": "summary",
        "mode": settings.mode,
        "duration_s": round(time.monotonic() - started, 3),
        "streams": counters,
        "services": services,
        "servers": supervisor.server_summary(),
    }
