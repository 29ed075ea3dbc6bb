"""`tradewind up --mode synth --duration 660`: by minute 10 the online trainer has promoted a policy by
its own rule on the generated market and the executor trades it on paper.

Whole stack as a user runs it (dashboard off: its fixed port may be taken on a test machine). Polls
the CLI the user would read: `tradewind policy list --json` for an online policy promoted on
`synth:SYN/USDT`, then `tradewind status --json` for RL fills. Prints the minute marks.
`SYNTH_SEED` picks the generated market (default 1); several seeded runs were tried (README).
Takes up to 11 minutes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEADLINE_S = 600.0  # minute 10 of `tradewind up`
POLL_S = 10.0
MARKET = "synth:SYN/USDT"


def _cli(env: dict[str, str], *args: str) -> Any:
    """A CLI command's JSON, or None while the stack cannot answer it yet."""
    out = subprocess.run([sys.executable, "-m", "shared", *args], env=env, capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else None


def _start(env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "shared", "up", "--mode", "synth", "--duration", "660"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def _promoted(rows: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [r for r in rows or [] if r["source"] == "online" and r["status"] == "promoted" and MARKET in r["markets"]]


@pytest.mark.timeout(900)  # the stack runs up to 11 minutes
async def test_synth_mode_promotes_an_online_policy_and_trades_it_by_minute_10(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env |= {
        "TRADEWIND_VAR_DIR": str(tmp_path / "var"),
        "TRADEWIND_TRAINER__POLICY_DIR": str(tmp_path / "policies"),
        "TRADEWIND_METRICS__ENABLED": "false",
        "TRADEWIND_DASHBOARD__ENABLED": "false",
        "TRADEWIND_INGEST__SYNTH__SEED": os.environ.get("SYNTH_SEED", "1"),
        "RAY_AUTH_MODE": "disabled",
    }
    log = (tmp_path / "up.log").open("wb")
    started = time.monotonic()
    up = _start(env, log)
    marks: dict[str, float] = {}
    try:
        while time.monotonic() - started < DEADLINE_S and up.poll() is None:
            await asyncio.sleep(POLL_S)
            rows = _cli(env, "policy", "list", "--json")
            if rows and "first round recorded" not in marks:
                marks["first round recorded"] = time.monotonic() - started
            if "promoted" not in marks and _promoted(rows):
                marks["promoted"] = time.monotonic() - started
            if "promoted" in marks:
                status = _cli(env, "status", "--json")
                if status and status["fills_by_strategy"].get("rl", 0) > 0:
                    marks["rl fills"] = time.monotonic() - started
                    break
        minutes = {k: round(v / 60, 1) for k, v in marks.items()}
        print(f"synth mode, seed {env['TRADEWIND_INGEST__SYNTH__SEED']}: minute marks {minutes}")
        assert up.poll() is None, f"tradewind up ended early ({up.returncode}); see {tmp_path / 'up.log'}"
        assert "promoted" in marks, f"no online policy promoted on {MARKET} by minute 10: {rows}"
        assert "rl fills" in marks, f"no RL fill by minute 10: {status}"
        (promoted,) = _promoted(rows)[:1]
        assert promoted["markets"] == [MARKET]
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        log.close()
