"""A 2-node Ray cluster on loopback for tests: `ray start` twice, two logical CPUs each, in a temp
dir of its own; stopped by process id (its processes name that dir), never `ray stop`, which ends
every Ray process on the machine."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
NODES = 2
CPUS_PER_NODE = 2


@dataclass
class Cluster:
    address: str
    tmp: Path
    env: dict[str, str]


def free_port_block(size: int = 6) -> int:
    """A first port P with P..P+size-1 free right now (Ray's head takes several fixed ports).

    Drawn from 23000-29999: below the kernel's ephemeral range (32768-60999), where any outgoing connection of the run
    could take one of the block before Ray binds it, clear of Ray's worker ports (10002-19999) and of the test Redis
    Cluster's ports (tests/shared/redis_cluster.py: 20000-22767 and 30000-32767)."""
    for _ in range(200):
        first = random.randint(23000, 30000 - size)
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + size):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return first
    raise RuntimeError("no block of free ports on 127.0.0.1")


def ray_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_TMPDIR=str(tmp), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env["RAY_raylet_start_wait_time_s"] = "180"  # a loaded CI machine starts a raylet slowly
    env["TRADEWIND_VAR_DIR"] = str(tmp / "var")
    return env


def _pids_of(tmp: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if str(tmp) in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(entry.name))
    return pids


def stop(tmp: Path, timeout: float = 10.0) -> None:
    """End this cluster's processes (found by its temp dir in their command lines) by process id."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _pids_of(tmp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _pids_of(tmp) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _pids_of(tmp):
            return


def _start(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([RAY, "start", *args], env=env, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(
            f"ray start {' '.join(args)}: exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def _alive_nodes(address: str, env: dict[str, str]) -> int:
    probe = (
        f"import ray; ray.init(address={address!r}, log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else 0


@contextlib.contextmanager
def two_node_cluster() -> Iterator[Cluster]:
    # Short and under /tmp: Ray's unix sockets live below it and their paths are length-limited.
    with tempfile.TemporaryDirectory(prefix="tw-rc-", dir="/tmp") as name:
        tmp = Path(name)
        env = ray_env(tmp)
        port = free_port_block()
        address = f"127.0.0.1:{port}"
        try:
            head = ["--head", f"--port={port}", f"--num-cpus={CPUS_PER_NODE}", f"--temp-dir={tmp}"]
            head += [
                f"--dashboard-port={port + 2}",
                "--include-dashboard=false",
            ]
            head += [f"--dashboard-agent-listen-port={port + 3}", f"--metrics-export-port={port + 4}"]
            _start(head, env)
            worker = [f"--address={address}", f"--num-cpus={CPUS_PER_NODE}"]
            worker += [f"--dashboard-agent-listen-port={port + 5}"]
            _start(worker, env)
            deadline = time.monotonic() + 120
            while _alive_nodes(address, env) < NODES:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Ray cluster at {address}: {NODES} nodes not alive within 120 s")
            yield Cluster(address, tmp, env)
        finally:
            stop(tmp)
