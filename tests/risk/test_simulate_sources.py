"""`tradewind risk simulate` on raw captures, normalized lines, and several sources merged by time."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.ingest.capture import read_records
from services.risk.replay import NS, load_messages
from services.risk.sources import is_normalized, load_capture, load_sources
from shared.cli import cli
from shared.schemas import Trade, to_json

DATA = Path(__file__).parents[1] / "data"
RAW_SPOT = DATA / "executor" / "binance_btcusdt_20240809_20s.gz"  # hftbacktest capture: `<ns> <raw frame>`
NORMALIZED = DATA / "risk" / "binance_btcusdt_20240808-09.jsonl.gz"
ENV = {"REDIS_URL": None, "DATABASE_URL": None, "TRADEWIND_DEBUG": None}


def test_a_raw_capture_is_read_through_the_venue_feed() -> None:
    assert not is_normalized(RAW_SPOT) and is_normalized(NORMALIZED)
    messages = load_capture(RAW_SPOT)
    trades = [m for m in messages if isinstance(m, Trade)]
    # Independently of the feed: every @trade frame of the capture, by its id and price.
    frames = [json.loads(r.data)["data"] for r in read_records(RAW_SPOT) if r.kind == "frame" and "@trade" in r.data]
    assert [(t.trade_id, t.price) for t in trades] == [(str(f["t"]), float(f["p"])) for f in frames]
    assert {m.exchange for m in messages} == {"binance"}
    assert [m.recv_ts for m in messages] == sorted(m.recv_ts for m in messages)


@pytest.fixture(scope="module")
def futures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The normalized file's USD-M messages of the raw capture's 20 s: another venue, same seconds."""
    path = tmp_path_factory.mktemp("sources") / "futures.jsonl.gz"
    messages = load_messages(NORMALIZED)
    end = messages[0].recv_ts + 25 * NS
    with gzip.open(path, "wb") as f:
        for m in messages:
            if m.exchange == "binance_futures" and m.recv_ts < end:
                f.write(to_json(m) + b"\n")
    return path


def test_raw_capture_and_normalized_lines_merge_by_time(futures: Path) -> None:
    merged = load_sources([RAW_SPOT, futures])
    assert {m.exchange for m in merged} == {"binance", "binance_futures"}
    assert [m.recv_ts for m in merged] == sorted(m.recv_ts for m in merged)
    assert len(merged) == len(load_capture(RAW_SPOT)) + len(load_messages(futures))


def test_simulate_command_reads_a_raw_capture_with_another_venue(futures: Path) -> None:
    argv = ["risk", "simulate", "--data", str(RAW_SPOT), "--data", str(futures), "--venue", "binance"]
    argv += ["--crash", "0.3", "--crash-seconds", "2", "--recover-seconds", "4", "--crash-at", "10", "--json"]
    result = CliRunner().invoke(cli, argv, env=ENV)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["venue"] == "binance" and report["scope"] == "venue"
    assert report["detected"] and report["false_alarms"] == 0
    crashed = {t["exchange"] for t in report["transitions"] if t["to"] == "crash"}
    assert crashed == {"binance"}  # the USD-M venue stayed calm: the composite it diverged from


def test_simulate_names_a_file_that_is_neither(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\nworld\n")
    result = CliRunner().invoke(cli, ["risk", "simulate", "--data", str(path), "--json"], env=ENV)
    assert result.exit_code == 2
    assert str(path) in result.stderr.splitlines()[-1]
