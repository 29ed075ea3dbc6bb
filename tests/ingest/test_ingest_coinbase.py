"""Coinbase Exchange: the recorded session through the production connector over the replay
exchange; a corrupted l2update -> gap, resubscription, fresh snapshot, resynced."""

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

SESSION = DATA / "coinbase" / "cryptofeed-2021-04-17"


def rebuild(frames) -> dict[str, Book]:
    """Coinbase's level2 rule: the snapshot, then every l2update's absolute sizes in order."""
    books: dict[str, Book] = {}
    for payload in frames:
        try:
            msg = json.loads(payload)
            if msg["type"] == "snapshot":
                books[msg["product_id"]] = ({}, {})
                set_levels(books[msg["product_id"]][0], msg["bids"])
                set_levels(books[msg["product_id"]][1], msg["asks"])
            elif msg["type"] == "l2update" and msg["product_id"] in books:
                bids, asks = books[msg["product_id"]]
                for side, price, size in msg["changes"]:
                    set_levels(bids if side == "buy" else asks, [(price, size)])
        except ValueError:
            continue  # an unreadable frame is skipped
    return books


async def test_recorded_session(redis):
    await check_recorded_session(redis, "coinbase", SESSION, rebuild(raw_frames(SESSION)), min_trades=50)


async def test_unreadable_l2update_is_a_gap_then_a_resync(redis, tmp_path):
    folder = tmp_path / "coinbase" / "session"

    def pick(payload: str) -> bool:
        return '"l2update","product_id":"SKL-USD"' in payload and payload.count('["') == 1

    changed = copy_with_one_frame_changed(SESSION, folder, pick, lambda p: p.replace('"]]', 'x"]]'), nth=20)
    run = await check_gap_and_resync(redis, "coinbase", folder, "SKL/USD")
    # The replay exchange's book skipped the unreadable delta too, so after the resync the
    # connector's book is the recorded one without it.
    expected = rebuild(raw_frames(folder))["SKL-USD"]
    own = run.connectors[0].feed.books["SKL/USD"]
    assert (own.bids, own.asks) == expected
    assert json.loads(changed)["type"] == "l2update"
