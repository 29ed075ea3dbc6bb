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
    assert summary["starts"] == {name: summary["kills"][name] + 1 for name in summary["starts"]}, summary["starts"]
