"""`make chaos`: one chaos run (tests/chaos/run.py) must end with no duplicate venue order, no fill missing
from PostgreSQL and no order accepted while halted, with trading continuing after every fault."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.run import main

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


async def test_chaos_counts_nothing_twice_loses_no_fill_and_places_nothing_while_halted(tmp_path: Path) -> None:
    out = Path(os.environ.get("CHAOS_SUMMARY") or tmp_path / "summary.json")  # `make chaos` sets it
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = await main(out, tmp_path)
    zero = ("duplicates", "lost_fills", "orders_while_halted", "unattributed_venue_orders", "decisions_without_outcome")
    figures = {k: summary[k] for k in zero}
    assert figures == dict.fromkeys(figures, 0), f"see {out} and the logs in {tmp_path / 'logs'}"
    assert summary["venue_orders_over_stored"] == 0, "PostgreSQL holds more fill quantity than the venue filled"
    assert not summary["stalls"], summary["stalls"]
    assert summary["venue_fills"] > 0, "the run did not trade"
    assert summary["halt_window_s"] >= 2.0, "the halt lasted 30 decisions (0.1 s apart at least): no window to test"
    # each service started once, then once after each kill -9: Redis or PostgreSQL restarting killed none
    # (a service's last exit is our stop)
    own_exits = {name: [c for c in codes[:-1] if c != -9] for name, codes in summary["exit_codes"].items()}
    logs = "".join(before_restarts(tmp_path / "logs" / f"{name}.log") for name, codes in own_exits.items() if codes)
    assert summary["starts"] == {name: summary["kills"][name] + 1 for name in summary["starts"]}, (
        f"{summary['starts']}, exits not ours {own_exits}\n{logs}"
    )


def before_restarts(log: Path, n: int = 25) -> str:
    """The lines a service logged before each restart: why it exited, printed in CI's output."""
    lines = log.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("---- chaos: start")][1:]
    return "".join(f"---- {log.name}, before line {i}\n" + "\n".join(lines[max(0, i - n) : i]) + "\n" for i in starts)
