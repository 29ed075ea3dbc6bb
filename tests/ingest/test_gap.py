"""Gap handling: one diff deleted from a real Binance capture -> gap reported, the book dropped
and resynced from a new snapshot, and no book update published across the gap."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from services.ingest.feed import CollectSink
from services.ingest.venues import get
from shared.schemas import BookUpdate, Status, streams
from tests.ingest.helpers import SAMPLE, book_from_messages, replay_through_connector, statuses


def capture_without_one_diff(src: Path, dst_root: Path, venue: str, nth: int) -> tuple[Path, dict]:
    """Copy an hftbacktest capture, leaving out the ``nth`` depth diff after the REST snapshot."""
    with gzip.open(src, "rt") as fh:
        lines = fh.read().splitlines(keepends=True)
    seen_snapshot, count, removed = False, 0, None
    kept = []
    for line in lines:
        payload = line.split(" ", 1)[1]
        if payload.startswith('{"lastUpdateId"'):
            seen_snapshot = True
        elif seen_snapshot and "@depth" in payload[:40]:
            count += 1
            if count == nth:
                removed = json.loads(payload)["data"]
                continue
        kept.append(line)
    assert removed is not None
    folder = dst_root / venue / "hftbacktest"
    folder.mkdir(parents=True)
    with gzip.open(folder / src.name, "wt") as fh:
        fh.writelines(kept)
    return folder, removed


@pytest.mark.integration
@pytest.mark.parametrize("exchange", ["binance", "binance_futures"])
async def test_deleted_diff_is_a_gap_then_a_resync(redis, tmp_path, exchange):
    src = next((SAMPLE / exchange / "hftbacktest").glob("*.gz"))
    folder, removed = capture_without_one_diff(src, tmp_path, exchange, nth=40)
    run = await replay_through_connector(redis, exchange, folder)

    states = [(s.state, s.symbol) for s in statuses(run) if s.state in ("gap", "resynced")]
    assert states == [("gap", "BTC/USDT"), ("resynced", "BTC/USDT")]
    gap = next(s for s in statuses(run) if s.state == "gap")
    assert "expected" in gap.detail

    books = [b for b in run.of(streams.md_book(exchange), BookUpdate) if b.symbol == "BTC/USDT"]
    # The update just before the missing one, then nothing until a fresh snapshot.
    before = max(i for i, b in enumerate(books) if not b.snapshot and b.seq < removed["U"])
    after = books[before + 1]
    assert after.snapshot, "the first book message after the gap must be a new snapshot"
    assert after.seq >= removed["u"]
    assert [b for b in books if not b.snapshot and removed["U"] <= b.seq < after.seq] == []

    # The published stream rebuilds the connector's book (from the resync snapshot on).
    feed = run.connectors[0].feed
    own = feed.books["BTC/USDT"]
    assert own.seq == books[-1].seq
    assert book_from_messages(books, "BTC/USDT") == (own.bids, own.asks)


def test_feed_gap_requests_a_snapshot_and_publishes_nothing_until_it_comes():
    """The same rule without any I/O: the feed asks for a snapshot and holds the book back."""
    venue = get("binance")
    sink = CollectSink()
    asked: list[tuple[str, float]] = []
    feed = venue.feed(venue.shipped_markets(), sink, request_snapshot=lambda s, d: asked.append((s, d)))
    with gzip.open(next((SAMPLE / "binance" / "hftbacktest").glob("*.gz")), "rt") as fh:
        records = fh.read().splitlines()
    depth = [r.split(" ", 1)[1] for r in records if "@depth" in r[:60]]
    snapshot = next(r.split(" ", 1)[1] for r in records if '{"lastUpdateId"' in r[:40])
    lid = json.loads(snapshot)["lastUpdateId"]
    start = next(i for i, d in enumerate(depth) if json.loads(d)["data"]["u"] > lid)
    for d in depth[: start + 5]:
        feed.on_frame(d, 1)
    assert asked == [("BTCUSDT", 0.0)]
    feed.on_snapshot("BTCUSDT", snapshot, 2)
    assert feed.synced("BTCUSDT")
    published = len(sink.messages)
    feed.on_frame(depth[start + 6], 3)  # start+5 skipped: a gap
    assert not feed.synced("BTCUSDT")
    assert [type(m) for m in sink.messages[published:]] == [Status]
    assert sink.messages[-1].state == "gap"
    assert len(asked) == 2 and feed.books["BTC/USDT"].bids == {}
    for d in depth[start + 7 : start + 20]:
        feed.on_frame(d, 4)
    assert not [m for m in sink.messages[published:] if isinstance(m, BookUpdate)]
