"""Bybit v5 (linear): a real ``orderbook.500.XRPUSDT`` recording (Bybit's historical archive, via
nautilus_trader's test data) through the production connector over the replay exchange, against
an independent rebuild; a deleted delta -> ``u`` gap, resubscription, fresh snapshot, resynced.

The recorded data has no v5 trades, so the capture's last line is the ``publicTrade`` example
frame from Bybit's v5 documentation (see tests/data/ingest/README.md)."""

from __future__ import annotations

import json

import pytest

from tests.ingest.helpers import DATA
from tests.ingest.venue_checks import (
    Book,
    check_gap_and_resync,
    check_recorded_session,
    copy_with_one_frame_changed,
    raw_frames,
    set_levels,
)

pytestmark = pytest.mark.integration

CAPTURE = DATA / "bybit" / "v5" / "bybit_v5_XRPUSDT_ob500_and_docs_trade.gz"


def rebuild(frames) -> dict[str, Book]:
    """Bybit's rule: a snapshot replaces the book, each delta sets absolute sizes (0 deletes)."""
    books: dict[str, Book] = {}
    for payload in frames:
        msg = json.loads(payload)
        if not msg["topic"].startswith("orderbook."):
            continue
        data = msg["data"]
        if msg["type"] == "snapshot":
            books[data["s"]] = ({}, {})
        set_levels(books[data["s"]][0], data["b"])
        set_levels(books[data["s"]][1], data["a"])
    return books


async def test_recorded_session(redis):
    run = await check_recorded_session(redis, "bybit", CAPTURE, rebuild(raw_frames(CAPTURE)), min_trades=1)
    assert run.connectors[0].feed.books["XRP/USDT:USDT"].seq == json.loads(list(raw_frames(CAPTURE))[-2])["data"]["u"]


async def test_deleted_delta_is_a_gap_then_a_resync(redis, tmp_path):
    modified = tmp_path / "bybit" / "capture.gz"
    removed = copy_with_one_frame_changed(CAPTURE, modified.parent, lambda p: '"type":"delta"' in p, lambda p: None, 20)
    (modified.parent / CAPTURE.name).rename(modified)
    run = await check_gap_and_resync(redis, "bybit", modified, "XRP/USDT:USDT")
    gap = next(s for s in run.messages["md:status"] if getattr(s, "state", "") == "gap")
    assert f"u={json.loads(removed)['data']['u']}" in gap.detail
    own = run.connectors[0].feed.books["XRP/USDT:USDT"]
    assert (own.bids, own.asks) == rebuild(raw_frames(modified))["XRPUSDT"]
