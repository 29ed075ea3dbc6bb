"""Run services as supervised OS processes (the pm2 role of `tradewind up`).

Each service is its own process group, its output prefixed and coloured; a crashed service is
restarted with exponential backoff until it crash-loops (too many restarts in a window), then it
is given up on with a message saying so while the others keep running. Stopping sends SIGTERM to
every group, waits ``stop_grace_s``, then SIGKILLs what is left: no orphans.

Servers (the embedded Redis and PostgreSQL) are watched under the same rules: one found dead is
started again in place (same port or socket, same data) after the same backoff, and given up on
after the same crash loop. Their owner stops them, after the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.text import Text

from shared.config import SupervisorSettings
from shared.embedded import die_with_parent

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerSpec:
    """A server watched in place: ``alive()`` polled, ``start()`` (blocking, run in a thread) to restart."""

    name: str
    start: Callable[[], object]
    alive: Callable[[], bool]
    describe_exit: Callable[[], str] = lambda: "died"


SERVER_POLL_S = 0.2


@dataclass
class ServiceState:
    spec: ServiceSpec | ServerSpec
    colour: str
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    exit_status: int | None = None
    state: str = "starting"  # running, restarting, gave_up, stopped, exited
    crash_times: deque[float] = field(default_factory=deque)
    backoff: float = 0.0

    def summary(self) -> dict[str, object]:
        return {"restarts": self.restarts, "exit_status": self.exit_status, "state": self.state}


class Supervisor:
    def __init__(
        self,
        specs: Sequence[ServiceSpec],
        settings: SupervisorSettings,
        console: Console | None = None,
        servers: Sequence[ServerSpec] = (),
        on_give_up: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        names = [*(s.name for s in servers), *(s.name for s in specs)]
        if len(set(names)) != len(names):
            raise ValueError(f"service and server names must be unique, got {names}")
        self.settings = settings
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.services = {s.name: ServiceState(s, COLOURS[i % len(COLOURS)]) for i, s in enumerate(specs)}
        self.servers = {s.name: ServiceState(s, "white") for s in servers}
        self.on_give_up = on_give_up  # told (name, why) after a give-up: `tradewind up` raises an alert
        self._stopping = asyncio.Event()
        self._width = max((len(n) for n in names), default=0)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, duration: float | None = None) -> dict[str, dict[str, object]]:
        """Run every service until ``stop()`` or ``duration`` seconds; return per-service summaries."""
        watchers = [asyncio.create_task(self._watch(s), name=f"watch-{n}") for n, s in self.services.items()]
        watchers += [asyncio.create_task(self._watch_server(s), name=f"watch-{n}") for n, s in self.servers.items()]
        try:
            if duration is None:
                await self._stopping.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), duration)
        finally:
            self._stopping.set()
            await asyncio.gather(*(self._terminate(s) for s in self.services.values()))
            await asyncio.gather(*watchers, return_exceptions=True)
        return {n: s.summary() for n, s in self.services.items()}

    def say(self, name: str, colour: str, line: str, style: str = "") -> None:
        text = Text(f"{name:<{self._width}} | ", style=colour)
        text.append(line, style=style)
        self.console.print(text)

    def server_summary(self) -> dict[str, dict[str, object]]:
        return {n: s.summary() for n, s in self.servers.items()}

    async def _watch(self, svc: ServiceState) -> None:
        assert isinstance(svc.spec, ServiceSpec)
        svc.backoff = self.settings.restart_backoff_s
        while not self._stopping.is_set():
            started = time.monotonic()
            svc.process = await asyncio.create_subprocess_exec(
                *svc.spec.argv,
                env={**os.environ, **svc.spec.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C reaches only us, we stop them in order
                preexec_fn=die_with_parent,
            )
            svc.state = "running"
            await self._pump(svc, svc.process)
            status = await svc.process.wait()
            svc.exit_status = status
            if not await self._may_restart(svc, started, f"exited with status {status}"):
                return

    async def _watch_server(self, svc: ServiceState) -> None:
        """Poll a server started by its owner; start it again in place when it is found dead."""
        assert isinstance(svc.spec, ServerSpec)
        svc.backoff = self.settings.restart_backoff_s
        svc.state = "running"
        started = time.monotonic()
        while not self._stopping.is_set():
            if svc.spec.alive():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), SERVER_POLL_S)
                continue
            if self._stopping.is_set():
                break
            if not await self._may_restart(svc, started, svc.spec.describe_exit()):
                return
            started = time.monotonic()
            try:
                await asyncio.to_thread(svc.spec.start)
            except Exception as exc:  # counted as another crash at the next poll
                self.say(svc.spec.name, svc.colour, f"restart failed: {exc}", "red")
                continue
            svc.state = "running"
            self.say(svc.spec.name, svc.colour, f"back after {time.monotonic() - started:.2f}s", "green")
        svc.state = "stopped"

    async def _may_restart(self, svc: ServiceState, started: float, what: str) -> bool:
        """After ``svc`` died: wait its backoff and say True, or False when stopping or crash-looping.

        The backoff doubles per restart up to ``restart_backoff_max_s`` and starts afresh after a run
        longer than the crash-loop window; more than ``crash_loop_restarts`` exits within the window
        is a crash loop, and the service (or server) is given up on.
        """
        if self._stopping.is_set():
            svc.state = "stopped"
            return False
        now = time.monotonic()
        if now - started > self.settings.crash_loop_window_s:
            svc.backoff = self.settings.restart_backoff_s  # it ran fine for a while: start afresh
        svc.crash_times.append(now)
        while svc.crash_times and now - svc.crash_times[0] > self.settings.crash_loop_window_s:
            svc.crash_times.popleft()
        if len(svc.crash_times) > self.settings.crash_loop_restarts:
            svc.state = "gave_up"
            window = f"{self.settings.crash_loop_window_s:g}s"
            why = f"crash loop: exited {len(svc.crash_times)} times within {window} (last: {what})"
            self.say(svc.spec.name, svc.colour, f"{why}; giving up on it, the others keep running", "bold red")
            await self._report_give_up(svc, why)
            return False
        svc.state = "restarting"
        self.say(svc.spec.name, svc.colour, f"{what}; restarting in {svc.backoff:.1f}s", "red")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), svc.backoff)
        if self._stopping.is_set():
            svc.state = "stopped"
            return False
        svc.restarts += 1
        svc.backoff = min(svc.backoff * 2, self.settings.restart_backoff_max_s)
        return True

    async def _report_give_up(self, svc: ServiceState, why: str) -> None:
        """Tell ``on_give_up``; a report that fails or hangs is said and dropped, never fatal here."""
        if self.on_give_up is None:
            return
        try:
            await asyncio.wait_for(self.on_give_up(svc.spec.name, why), 10)
        except Exception as exc:  # the Redis it reports to may be the server just given up on
            self.say(svc.spec.name, svc.colour, f"could not report the give-up: {exc!r}", "red")

    async def _pump(self, svc: ServiceState, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # a line longer than the stream limit: show its start
                line = (await process.stdout.read(4096)) + b"..."
            if not line:
                return
            self.say(svc.spec.name, svc.colour, line.decode(errors="replace").rstrip())

    async def _terminate(self, svc: ServiceState) -> None:
        process = svc.process
        if process is None or process.returncode is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.settings.stop_grace_s)
        except TimeoutError:
            self.say(svc.spec.name, svc.colour, f"did not stop in {self.settings.stop_grace_s:g}s; killing", "red")
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
        _signal_group(process.pid, signal.SIGKILL)  # anything the service itself left in its group


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def python_module(module: str) -> list[str]:
    """argv that runs ``python -m module`` with this interpreter."""
    return [sys.executable, "-m", module]
