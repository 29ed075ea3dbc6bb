"""Bitstamp v2: the recorded session (diffs + REST snapshots) through the production connector
over the replay exchange, against an independent rebuild; an unreadable diff -> gap, a new REST
snapshot of the book at that moment, resynced."""

from __future__ import annotations

import gzip
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

SESSION = DATA / "bitstamp" / "cryptofeed-2022-01-05"


def rebuild(folder) -> dict[str, Book]:
    """Bitstamp's documented rule: the REST snapshot, then the diffs with a later microtimestamp."""
    books: dict[str, Book] = {}
    stamps: dict[str, int] = {}
    with gzip.open(folder / "BITSTAMP.http.0.0.gz", "rt") as fh:
        for line in fh:
            url, arrow, rest = line.partition(" -> ")
            if not arrow:
                continue
            pair = url.rstrip("/").rsplit("/", 1)[1]
            snap = json.loads(rest.split(": ", 1)[1])
            books[pair] = ({}, {})
            set_levels(books[pair][0], snap["bids"])
            set_levels(books[pair][1], snap["asks"])
            stamps[pair] = int(snap["microtimestamp"])
    seen: set[str] = set()
    for payload in raw_frames(folder):
        try:
            msg = json.loads(payload)
            if msg.get("event") != "data" or not msg["channel"].startswith("diff_order_book_"):
                continue
            pair, data = msg["channel"][16:], msg["data"]
            seen.add(pair)
            if int(data["microtimestamp"]) > stamps[pair]:
                stamps[pair] = int(data["microtimestamp"])
                set_levels(books[pair][0], data["bids"])
                set_levels(books[pair][1], data["asks"])
        except ValueError:
            continue  # an unreadable diff
    return {pair: book for pair, book in books.items() if pair in seen}


async def test_recorded_session(redis):
    await check_recorded_session(redis, "bitstamp", SESSION, rebuild(SESSION), min_trades=5)


async def test_unreadable_diff_is_a_gap_then_a_resync(redis, tmp_path):
    folder = tmp_path / "bitstamp" / "session"

    def pick(payload: str) -> bool:
        return '"channel":"diff_order_book_ethusd"' in payload

    count = sum(map(pick, raw_frames(SESSION)))
    # Late in the session, when the book is live (earlier, while it still waits for its first
    # snapshot, a loss is a gap too; this test takes the common case).
    copy_with_one_frame_changed(SESSION, folder, pick, lambda p: p.replace('"]', 'x"]', 1), count - 5)
    run = await check_gap_and_resync(redis, "bitstamp", folder, "ETH/USD")
    own = run.connectors[0].feed.books["ETH/USD"]
    assert (own.bids, own.asks) == rebuild(folder)["ethusd"]
