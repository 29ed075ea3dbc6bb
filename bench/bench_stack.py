"""The whole `make run` stack: peak RSS of every process it starts (Ray's own excluded), its flow, and
the rate it carries with bounded consumer lag.

``run_*``: one `tradewind up --mode replay` as `make run` starts it (recorded pace), RUN_S seconds.

``stack_*``: a ladder of `tradewind up --mode replay` runs with ``ingest.replay.speed`` at each of
SPEEDS (0: as fast as the replay exchange's socket takes the frames), each a fresh stack in its own
folder, read for STEP_S seconds and then stopped (SIGTERM). The shipped sample is short (Binance
spot 120 s, Binance USD-M 30 s, Coinbase 30 s: ~12.3k frames a loop) and loops: at these speeds
every venue's capture ends many times a step, each end a reconnect and a fresh snapshot. The ladder
sets ``ingest.reconnect_min_s`` to RECONNECT_S: at the default 0.5 s pause a loop, the sample can
offer at most ~25k frames/s however fast it is replayed, and the pause, not the stack, sets the rate.

Each step samples, once a second from WARMUP_S after the first market data message, for STEP_S
seconds: every stream's publisher counters and every consumer group's lag (entries not yet
delivered, Redis 7's XINFO GROUPS ``lag``; an entry holds up to a batch of messages) with
``shared.monitor``, and every process the stack started (psutil, named by its command line: the
services, `redis`, `postgres`; a service's children, the trainer's Ray workers, count as the service):
its CPU time and, from Linux's schedstat, the time it was runnable but waiting for a CPU, each in % of
one core over the window. Their sum is the process's *demand*: on a shared machine a process can be
starved well below 100% CPU and still be the one that cannot keep up. Per step:

- msgs/s: messages written to the ``md:*`` streams (ingest's output) per second over the window;
- a group's lag is *bounded* when the max over the window's last third is ≤ max(2 x the max over its
  first third, LAG_SLACK) and no reading reaches LAG_LIMIT; the step is bounded when every group is.

``stack_msgs_per_s``: the highest msgs/s of a bounded step; ``stack_max_lag``: that step's max lag
(entries). ``stack_knee_speed``: the first speed whose step is unbounded; when none is, the first
speed past which msgs/s rose by less than PLATEAU times (the producer, not a consumer, stopped keeping
up); "none" when neither. ``stack_saturates_first``: at the knee, the consumer of an unbounded group
with the highest demand or, at a plateau, the process with the highest demand; "none (...)" when
that demand is under SATURATED_PCT (``stack_saturates_first_pct``: the demand). ``stack_ladder``: per
step ``speed:msgs_per_s/max_lag/bounded|unbounded/busiest=CPU%+wait%``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.context import BenchContext

RUN_S = 40
SPEEDS = (10, 40, 160, 0)  # ~3k, ~13k, ~50k frames/s offered; 0: all the stack takes
STEP_S = 24  # readings per step, after the warm-up
START_S = 60  # the most a step waits for its stack's first market data
WARMUP_S = 4.0
RECONNECT_S = 0.02
LAG_SLACK = 200
LAG_LIMIT = 10_000
PLATEAU = 1.1
SATURATED_PCT = 80.0  # % of one core a process runs or waits to run: it would take more than it gets
BUDGET_S = 270  # no step starts that could end past this, at the longest step's pace (the module: < 5 min)
RAY_MARKERS = ("ray::", "raylet", "gcs_server", "ray/dashboard", "ray/_private", "plasma_store", "dashboard/agent")
SERVICE_OF_GROUP = {"recorder": "ingest"}  # the recorder runs in the ingest process


def _is_ray(proc: psutil.Process) -> bool:
    try:
        cmd = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(marker in cmd for marker in RAY_MARKERS)


def process_name(cmdline: list[str]) -> str | None:
    """The stack's name for a process from its command line: a service, `redis`, `postgres`; None otherwise."""
    for i, arg in enumerate(cmdline):
        if arg == "-m" and i + 1 < len(cmdline) and cmdline[i + 1].startswith("services."):
            return cmdline[i + 1].split(".")[1]
    head = " ".join(cmdline[:1])
    if "redis-server" in head:
        return "redis"
    if "postgres" in head:
        return "postgres"
    return None


def group_service(group: str) -> str:
    """The service reading with consumer group ``group`` (groups are named after their service)."""
    return SERVICE_OF_GROUP.get(group, group.split("-", 1)[0])


def lag_bounded(lags: list[int]) -> bool:
    """Whether one group's lag readings over a step stay bounded (see the module docstring)."""
    if not lags:
        return True
    third = max(1, len(lags) // 3)
    return max(lags) < LAG_LIMIT and max(lags[-third:]) <= max(2 * max(lags[:third]), LAG_SLACK)


@dataclass
class Step:
    speed: float
    msgs_per_s: float = 0.0
    lags: dict[str, list[int]] = field(default_factory=dict)  # "stream/group" -> readings
    cpu: dict[str, float] = field(default_factory=dict)  # process name -> % of one core on a CPU
    wait: dict[str, float] = field(default_factory=dict)  # process name -> % of one core runnable, waiting for a CPU
    window_s: float = 0.0

    @property
    def max_lag(self) -> int:
        return max((max(v) for v in self.lags.values() if v), default=0)

    @property
    def unbounded_groups(self) -> list[str]:
        return sorted(k for k, v in self.lags.items() if not lag_bounded(v))

    @property
    def bounded(self) -> bool:
        return not self.unbounded_groups

    def demand(self, name: str) -> float:
        """% of one core ``name`` ran or was ready to run: what it would use given the cores."""
        return self.cpu.get(name, 0.0) + self.wait.get(name, 0.0)

    def busiest(self, among: set[str] | None = None) -> tuple[str, float]:
        names = [k for k in self.cpu if among is None or k in among]
        name = max(names, key=self.demand, default="?")
        return name, self.demand(name)

    def line(self) -> str:
        if not self.window_s:
            return f"{self.speed:g}:no-data"
        name, _ = self.busiest()
        verdict = "bounded" if self.bounded else "unbounded"
        cpu, wait = self.cpu.get(name, 0.0), self.wait.get(name, 0.0)
        return f"{self.speed:g}:{self.msgs_per_s:.0f}/{self.max_lag}/{verdict}/{name}={cpu:.0f}+{wait:.0f}%"


def summarize(steps: list[Step]) -> dict[str, float | int | str]:
    """The ``stack_*`` keys from the ladder's steps, in ladder order (see the module docstring); a step
    that never saw market data (its stack did not start in time) is shown and otherwise left out."""
    ladder = " ".join(s.line() for s in steps)
    steps = [s for s in steps if s.window_s]
    bounded = [s for s in steps if s.bounded]
    best = max(bounded, key=lambda s: s.msgs_per_s, default=None)
    knee, first = None, "none"
    unbounded = next((s for s in steps if not s.bounded), None)
    demand = 0.0
    if unbounded is not None:
        knee = unbounded
        consumers = {group_service(k.split("/", 1)[1]) for k in unbounded.unbounded_groups}
        first, demand = knee.busiest(consumers)
    else:
        knee = next((b for a, b in itertools.pairwise(steps) if b.msgs_per_s < a.msgs_per_s * PLATEAU), None)
        if knee is not None:
            first, demand = knee.busiest()
    if knee is not None and demand < SATURATED_PCT:
        first = f"none ({first} {demand:.0f}%)"
    return {
        "stack_msgs_per_s": round(best.msgs_per_s) if best else 0,
        "stack_max_lag": best.max_lag if best else -1,
        "stack_knee_speed": f"{knee.speed:g}" if knee else "none",
        "stack_saturates_first": first,
        "stack_saturates_first_pct": round(demand, 1),
        "stack_ladder": ladder,
        "stack_ladder_step_s": STEP_S,
        "stack_reconnect_s": RECONNECT_S,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(folder: Path, duration: float, extra: dict[str, str]) -> subprocess.Popen[str]:
    """`tradewind up --mode replay` in ``folder`` (its var dir there), in its own process group."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["TRADEWIND_VAR_DIR"] = str(folder / "var")
    env["TRADEWIND_DASHBOARD__PORT"] = str(_free_port())
    env["TRADEWIND_METRICS__PORT"] = "0"  # every service picks a free port
    env.update(extra)
    return subprocess.Popen(
        [sys.executable, "-m", "shared", "up", "--mode", "replay", "--duration", str(duration)],
        env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen[str], within_s: float) -> str:
    """The run's stdout once it exits; past ``within_s`` its process group is stopped, then killed."""
    try:
        return proc.communicate(timeout=within_s)[0]
    except subprocess.TimeoutExpired:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                return proc.communicate(timeout=wait)[0]
        raise


def _stop_leftovers(folder: Path) -> None:
    """Stop what a killed run left behind: a server started under ``folder`` (PostgreSQL detaches)."""
    for p in psutil.process_iter(["cmdline"]):
        if f"{folder}{os.sep}" in " ".join(p.info["cmdline"] or ()):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                p.terminate()


def _tree(root: psutil.Process, var: Path) -> dict[int, str]:
    """pid -> name for the stack's processes; a process without a name of its own takes its parent's.

    PostgreSQL's server detaches from `up` (pg_ctl): it is found by its data folder under ``var``."""
    try:
        procs = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    for p in psutil.process_iter(["cmdline"]):
        if f"{var}{os.sep}" in " ".join(p.info["cmdline"] or ()) and p.pid != root.pid and p not in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                procs += [p, *p.children(recursive=True)]
    names: dict[int, str] = {root.pid: "supervisor"}
    pending = {p.pid: p for p in procs}
    while pending:
        progressed = False
        for pid, p in list(pending.items()):
            try:
                own, parent = process_name(p.cmdline()), p.ppid()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                del pending[pid]
                continue
            if own or parent in names:
                names[pid] = own or names[parent]
                del pending[pid]
                progressed = True
        if not progressed:
            break
    return names


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _sched_seconds(pid: int) -> tuple[float, float] | None:
    """(CPU seconds, seconds runnable but waiting for a CPU) of a process so far; the wait is Linux's
    schedstat summed over its live threads (0 elsewhere)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    wait = 0.0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                wait += int((task / "schedstat").read_text().split()[1]) / 1e9
    return t.user + t.system, wait


async def _sample_step(proc: subprocess.Popen[str], var: Path, step: Step) -> None:
    """Readings once a second for STEP_S seconds after the warm-up (see the module docstring)."""
    from shared import monitor
    from shared.bus import connect_redis

    until = time.monotonic() + START_S
    url_file = var / "run" / "redis.url"
    while not (url := _read(url_file)).startswith(("redis://", "rediss://", "unix://")):  # written, not half
        if proc.poll() is not None or time.monotonic() > until:
            return
        await asyncio.sleep(0.2)
    redis = connect_redis(url)
    root = psutil.Process(proc.pid)
    first: dict[int, tuple[float, float]] = {}
    last: dict[int, tuple[float, float]] = {}
    names: dict[int, str] = {}
    start: tuple[float, int] | None = None
    md_seen_at: float | None = None
    try:
        while proc.poll() is None and step.window_s < STEP_S and (md_seen_at is not None or time.monotonic() < until):
            tick = time.monotonic()
            try:
                infos = await monitor.sample(redis)
            except Exception:  # the stack still starting (ACL users, streams appearing)
                infos = {}
            msgs = sum(s.msgs_written or 0 for n, s in infos.items() if n.startswith("md:"))
            if msgs and md_seen_at is None:
                md_seen_at = tick
            if md_seen_at is not None and tick - md_seen_at >= WARMUP_S:
                if start is None:
                    start = (tick, msgs)
                names.update(_tree(root, var))
                for pid in names:
                    times = _sched_seconds(pid)
                    if times is not None:
                        first.setdefault(pid, times)
                        last[pid] = times
                for name, s in infos.items():
                    for g in s.groups:
                        step.lags.setdefault(f"{name}/{g.name}", []).append(g.lag)
                step.window_s = tick - start[0]
                if step.window_s > 0:
                    step.msgs_per_s = (msgs - start[1]) / step.window_s
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    finally:
        await redis.aclose()
    if step.window_s > 0:
        for pid, (run, wait) in last.items():
            name, pct = names[pid], 100 / step.window_s
            step.cpu[name] = step.cpu.get(name, 0.0) + (run - first[pid][0]) * pct
            step.wait[name] = step.wait.get(name, 0.0) + max(0.0, wait - first[pid][1]) * pct  # a thread ended
        step.cpu = {k: round(v, 1) for k, v in sorted(step.cpu.items())}
        step.wait = {k: round(v, 1) for k, v in sorted(step.wait.items())}


def ladder_step(ctx: BenchContext, speed: float) -> Step:
    """One bounded `tradewind up --mode replay` at ``speed``, sampled (see the module docstring)."""
    folder = ctx.work_dir / f"stack-speed-{speed:g}"
    extra = {"TRADEWIND_INGEST__REPLAY__SPEED": str(speed), "TRADEWIND_INGEST__RECONNECT_MIN_S": str(RECONNECT_S)}
    proc = _launch(folder, START_S + STEP_S + WARMUP_S, extra)  # the duration: a backstop, SIGTERM comes first
    step = Step(speed)
    try:
        asyncio.run(_sample_step(proc, folder / "var", step))
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)  # `up` stops its services and servers
        _finish(proc, 60)
        _stop_leftovers(folder)
        shutil.rmtree(folder, ignore_errors=True)
    return step


def _rss_run(ctx: BenchContext) -> dict[str, float]:
    """`tradewind up --mode replay` with its own embedded servers, as `make run` starts it."""
    proc = _launch(ctx.work_dir / "stack-run", RUN_S, {})
    root = psutil.Process(proc.pid)
    peak = 0.0
    deadline = time.monotonic() + RUN_S + 60
    while proc.poll() is None and time.monotonic() < deadline:
        total = 0
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in tree:
            if _is_ray(p):
                continue
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += p.memory_info().rss
        peak = max(peak, total / 2**20)
        time.sleep(0.5)
    try:
        stdout = _finish(proc, 5)
    finally:
        _stop_leftovers(ctx.work_dir / "stack-run")
    summary = json.loads(stdout.strip().splitlines()[-1])
    streams = summary["streams"]
    return {
        "run_rss_mib": round(peak, 1),
        "run_duration_s": summary["duration_s"],
        "run_trades_published": sum(v.get("msgs", 0) for k, v in streams.items() if k.startswith("md:trades:")),
        "run_orders_events": streams.get("orders:events", {}).get("msgs", 0),
        "run_service_restarts": sum(int(s["restarts"]) for s in summary["services"].values()),
    }


def run(ctx: BenchContext) -> dict[str, float | int | str]:
    started = time.monotonic()
    figures: dict[str, float | int | str] = dict(_rss_run(ctx))
    steps: list[Step] = []
    longest = STEP_S + WARMUP_S + 15.0  # a step's start-up and stop: a guess until one has run
    for speed in SPEEDS:
        if time.monotonic() - started + longest > BUDGET_S:
            break
        step_started = time.monotonic()
        steps.append(ladder_step(ctx, speed))
        longest = max(longest, time.monotonic() - step_started)
        print(f"stack speed {speed:g}: {steps[-1].line()} cpu {steps[-1].cpu}", file=sys.stderr, flush=True)
    figures.update(summarize(steps))
    figures["stack_ladder_steps"] = f"{len(steps)}/{len(SPEEDS)}"
    return figures


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(BenchContext("", "", Path(tmp))), indent=2))
