"""Service processes of the chaos run (`python -m services.<name>`), restarted whenever they exit, and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from shared.embedded import die_with_parent

ROOT = Path(__file__).resolve().parents[2]


class Service:
    """One service as an OS process of its own, restarted on any exit (a crash, or our kill -9) until ``stop``."""

    def __init__(self, name: str, env: Mapping[str, str], log_dir: Path, restart_delay_s: float = 0.2) -> None:
        self.name = name
        self.env = {**os.environ, **env, "TRADEWIND_SERVICE_NAME": name}
        self.log_path = log_dir / f"{name}.log"
        self.restart_delay_s = restart_delay_s
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.exits: list[int] = []
        self.kills = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_running(), name=f"keep-{self.name}")

    async def _keep_running(self) -> None:
        with self.log_path.open("ab") as log:
            while not self._stopping:
                self.starts += 1
                log.write(f"---- chaos: start {self.starts} at {time.time():.3f}\n".encode())
                log.flush()
                self.process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    f"services.{self.name}",
                    cwd=ROOT,
                    env=self.env,
                    stdout=log,
                    stderr=log,
                    preexec_fn=die_with_parent,
                )
                self._started.set()
                code = await self.process.wait()
                self.exits.append(code)
                if not self._stopping:
                    await asyncio.sleep(self.restart_delay_s)  # restart policy, not a wait for a condition

    async def kill9(self) -> int:
        """SIGKILL the running process (it is restarted); return the pid killed."""
        await self._started.wait()
        assert self.process is not None
        pid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        self.kills += 1
        return pid

    async def stop(self, grace_s: float = 15.0) -> None:
        self._stopping = True
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self._task is not None:
            await self._task


async def tradewind(env: Mapping[str, str], *args: str, timeout: float = 60.0) -> str:
    """Run the `tradewind` CLI (``python -m shared``) as an operator would; return its stdout, fail on non-zero."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared",
        *args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"tradewind {' '.join(args)} exited {proc.returncode}: {err.decode()[-2000:]}")
    return out.decode()
