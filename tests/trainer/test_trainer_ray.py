"""Ray on purpose: a run trains on its own local Ray unless told where, and a named cluster that
does not answer is an error within seconds, naming it.

A stale cluster is the case that hung `tradewind train` for minutes: `ray start` records its
address in `<temp>/ray/ray_current_cluster`, and a plain `ray.init()` joins it even once it is gone.
The tests record a dead one in a temp dir of their own (`RAY_TMPDIR`), never in the machine's
/tmp/ray, which other Ray users share.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.trainer.training import RayUnavailable, check_ray_address, ray_address

DATA = Path(__file__).resolve().parents[1] / "data" / "trainer" / "btc-perp-20211231_1m_head3000.csv.gz"
TINY = (
    "--timesteps",
    "256",
    "--set",
    "training.train_batch_size_per_learner=256",
    "--set",
    "training.minibatch_size=64",
    "--set",
    "training.num_epochs=1",
)


@pytest.fixture
def dead_address() -> Iterator[str]:
    """host:port of a port nobody listens on: bound (so nothing else takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    # Short and under /tmp: Ray's unix sockets live below it and their paths are length-limited.
    with tempfile.TemporaryDirectory(prefix="tw-ray-", dir="/tmp") as tmp:
        yield Path(tmp)


def _env(ray_tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_TMPDIR=str(ray_tmp), RAY_USAGE_STATS_ENABLED="0", TRADEWIND_VAR_DIR=str(ray_tmp / "var"))
    env.update(extra)
    return env


def _train(ray_tmp: Path, env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "shared", "train", "--algo", "ppo", "--data", str(DATA), "--out", str(ray_tmp / "p")]
    return subprocess.run([*cmd, *TINY, *args], cwd=ray_tmp, env=env, capture_output=True, text=True, timeout=timeout)


def test_address_comes_from_the_flag_then_ray_address_then_local() -> None:
    assert ray_address("10.0.0.5:6379", {"RAY_ADDRESS": "10.0.0.6:6379"}) == ("10.0.0.5:6379", "--address")
    assert ray_address(None, {"RAY_ADDRESS": "10.0.0.6:6379"}) == ("10.0.0.6:6379", "RAY_ADDRESS")
    assert ray_address(None, {"RAY_ADDRESS": ""}) == ("local", "default")
    assert ray_address(None, {}) == ("local", "default")


def test_a_dead_address_fails_within_the_deadline_naming_it(dead_address: str) -> None:
    started = time.monotonic()
    with pytest.raises(RayUnavailable, match=dead_address.replace(".", r"\.") + r" \(RAY_ADDRESS\) does not answer"):
        check_ray_address(dead_address, "RAY_ADDRESS", timeout=2.0)
    with pytest.raises(RayUnavailable, match=r"127\.0\.0\.1:1 \(--address\)"):
        check_ray_address("ray://127.0.0.1:1", "--address", timeout=2.0)
    assert time.monotonic() - started < 4
    with pytest.raises(RayUnavailable, match="expected host:port"):
        check_ray_address("nowhere", "--address")


def _listener(reply: bytes | None) -> tuple[socket.socket, threading.Thread]:
    """A local server that accepts one connection and sends `reply` (None: says nothing, a hung GCS)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            if reply is not None:
                conn.sendall(reply)
            with contextlib.suppress(OSError):
                conn.recv(64)  # hold the connection until the client gives up (a reset, when it unread data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize(
    ("reply", "found"),
    [
        (None, "does not answer within 1 s"),  # accepts, then silence: bounded by the timeout
        (b"-ERR unknown command 'PRI'\r\n", "does not answer as one"),  # e.g. a Redis on that port
    ],
)
def test_a_server_that_is_not_a_ray_cluster_fails_within_the_deadline(reply: bytes | None, found: str) -> None:
    server, thread = _listener(reply)
    address = f"127.0.0.1:{server.getsockname()[1]}"
    started = time.monotonic()
    with server, pytest.raises(RayUnavailable, match=found) as failed:
        check_ray_address(address, "--address", timeout=1.0)
    assert address in str(failed.value)
    assert time.monotonic() - started < 3
    thread.join(timeout=5)


def test_a_grpc_server_passes_the_check() -> None:
    settings_frame = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # what a gRPC server (a Ray GCS) sends first
    server, thread = _listener(settings_frame)
    with server:
        check_ray_address(f"127.0.0.1:{server.getsockname()[1]}", "--address", timeout=2.0)
    thread.join(timeout=5)


@pytest.mark.slow
def test_train_on_a_dead_explicit_address_fails_fast_naming_it(ray_tmp: Path, dead_address: str) -> None:
    started = time.monotonic()
    done = _train(ray_tmp, _env(ray_tmp), "--address", dead_address, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"Ray cluster at {dead_address} (--address) does not answer" in done.stderr
    assert done.stdout == ""
    via_env = _train(ray_tmp, _env(ray_tmp, RAY_ADDRESS=dead_address), timeout=60)
    assert via_env.returncode == 1, via_env.stderr[-2000:]
    assert f"Ray cluster at {dead_address} (RAY_ADDRESS) does not answer" in via_env.stderr
    assert time.monotonic() - started < 40  # two CLI starts; Ray itself would retry for minutes


@pytest.mark.slow
def test_train_trains_locally_despite_a_dead_recorded_cluster(ray_tmp: Path, dead_address: str) -> None:
    recorded = ray_tmp / "ray" / "ray_current_cluster"
    recorded.parent.mkdir()
    recorded.write_text(dead_address)
    env = _env(ray_tmp)
    # The premise: with this environment, Ray's own discovery picks the dead cluster.
    probe = "import ray._private.services as s; print(s.get_ray_address_from_environment(None, None))"
    seen = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert seen.stdout.strip() == dead_address, seen.stderr[-2000:]

    done = _train(ray_tmp, env, timeout=240)  # a plain ray.init() would still be retrying the dead GCS
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(done.stdout)
    assert metrics["ray_nodes"] == 1
    assert metrics["ray_address"].rpartition(":")[2] != dead_address.rpartition(":")[2]
    assert metrics["timesteps"] >= 256
    assert (ray_tmp / "p" / "tradewind.json").is_file()
    assert recorded.read_text() == dead_address  # the local run did not take over the record
