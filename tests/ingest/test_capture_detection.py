"""Which venue recorded a capture: plain captures (one raw frame per line, no venue in any name)
are recognised by their frames' shape, so `tradewind replay-server --data TREE` serves them; a
file nothing can place is skipped with a warning naming it, not fatal to the whole tree."""

from __future__ import annotations

import gzip
import json
import logging
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.ingest.capture import CaptureError, load_session
from services.ingest.replay import ReplayServer
from services.ingest.venues import NAMES
from shared.cli import cli
from tests.ingest.helpers import DATA

BYBIT_PLAIN = DATA / "bybit" / "v5" / "bybit_v5_XRPUSDT_ob500_and_docs_trade.gz"
_CF_FRAME = re.compile(r"^\d+\.\d+: (.+)$")


def recorded_session(exchange: str) -> Path:
    return min(p for p in (DATA / exchange).iterdir() if p.is_dir())


def plain_copy(exchange: str, dst: Path) -> Path:
    """The venue's recorded frames rewritten as a plain capture (timestamps and names dropped)."""
    frames: list[str] = []
    for f in sorted(recorded_session(exchange).glob("*.ws.*")):
        with gzip.open(f, "rt") as fh:
            frames.extend(m.group(1) for line in fh.read().splitlines() if (m := _CF_FRAME.match(line)))
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(frames[:300]) + "\n")
    return dst


# Binance.US sends Binance's frames byte for byte: a plain capture of it reads as Binance.
EXPECTED = {ex: ("binance" if ex == "binance_us" else ex) for ex in NAMES}


@pytest.mark.parametrize("exchange", sorted(set(NAMES) - {"bybit"}))
def test_plain_capture_venue_is_told_by_its_frames(exchange, tmp_path):
    path = plain_copy(exchange, tmp_path / "captures" / "frames.txt")
    assert load_session(path).venue == EXPECTED[exchange]


def test_bybit_plain_capture_in_a_folder_not_named_after_it(tmp_path):
    path = tmp_path / "mine" / "capture.gz"
    path.parent.mkdir()
    shutil.copy(BYBIT_PLAIN, path)
    assert load_session(path).venue == "bybit"
    result = CliRunner().invoke(cli, ["normalize", str(path)])  # no --exchange needed
    assert result.exit_code == 0, result.output
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    assert {m["exchange"] for m in messages} == {"bybit"} and {m["type"] for m in messages} == {"trade", "book"}


def test_frames_of_two_venues_or_none_are_not_guessed(tmp_path):
    okx = plain_copy("okx", tmp_path / "a.txt").read_text().splitlines()
    kraken = plain_copy("kraken", tmp_path / "b.txt").read_text().splitlines()
    (tmp_path / "mixed.txt").write_text("\n".join(line for pair in zip(okx, kraken, strict=False) for line in pair))
    assert load_session(tmp_path / "mixed.txt").venue is None
    (tmp_path / "notes.txt").write_text("hello\n[1, 2]\n{}\n")
    assert load_session(tmp_path / "notes.txt").venue is None


def test_replay_tree_serves_plain_captures_and_skips_what_it_cannot_place(tmp_path, caplog):
    tree = tmp_path / "tree"
    shutil.copytree(recorded_session("kraken"), tree / "kraken-session")
    (tree / "misc").mkdir()
    shutil.copy(BYBIT_PLAIN, tree / "misc" / "ob.gz")
    (tree / "misc" / "unknown.log").write_text('{"hello": "world"}\n')
    with caplog.at_level(logging.WARNING, logger="services.ingest.replay"):
        server = ReplayServer.from_path(tree)
    assert set(server.rules) == {"kraken", "bybit"}
    assert any("unknown.log" in r.getMessage() and "--exchange" in r.getMessage() for r in caplog.records)
    with pytest.raises(CaptureError, match="pass --exchange"):
        ReplayServer.from_path(tree / "misc" / "unknown.log")
    assert set(ReplayServer.from_path(tree / "misc" / "unknown.log", "bybit").rules) == {"bybit"}


def test_replay_server_serves_every_venue_of_the_test_data():
    assert set(ReplayServer.from_path(DATA).rules) == set(NAMES)
