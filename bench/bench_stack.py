"""The whole `make run` stack: peak RSS of every process it starts (Ray's own excluded), and its flow."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import psutil

from bench.context import BenchContext

DURATION_S = 40
RAY_MARKERS = ("ray::", "raylet", "gcs_server", "ray/dashboard", "ray/_private", "plasma_store", "dashboard/agent")


def _is_ray(proc: psutil.Process) -> bool:
    try:
        cmd = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(marker in cmd for marker in RAY_MARKERS)


def run(ctx: BenchContext) -> dict[str, float]:
    """`tradewind up --mode replay` with its own embedded servers, as `make run` starts it."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["TRADEWIND_VAR_DIR"] = str(ctx.work_dir / "stack-var")
    env["TRADEWIND_DASHBOARD__PORT"] = "18080"
    env["TRADEWIND_METRICS__PORT"] = "19100"
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared", "up", "--mode", "replay", "--duration", str(DURATION_S)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    root = psutil.Process(proc.pid)
    peak = 0.0
    while proc.poll() is None:
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
    stdout, _ = proc.communicate()
    summary = json.loads(stdout.strip().splitlines()[-1])
    streams = summary["streams"]
    return {
        "run_rss_mib": round(peak, 1),
        "run_duration_s": summary["duration_s"],
        "run_trades_published": sum(v.get("msgs", 0) for k, v in streams.items() if k.startswith("md:trades:")),
        "run_orders_events": streams.get("orders:events", {}).get("msgs", 0),
        "run_service_restarts": sum(int(s["restarts"]) for s in summary["services"].values()),
    }
