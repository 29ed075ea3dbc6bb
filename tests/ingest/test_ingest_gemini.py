"""Gemini v2: the recorded session through the production connector over the replay exchange,
against an independent rebuild; an unreadable l2_updates -> gap, resubscription, the whole book
again, resynced."""

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

SESSION = DATA / "gemini" / "cryptofeed-2021-06-24"


def rebuild(frames) -> dict[str, Book]:
    """Gemini's rule: the first l2_updates of a symbol is its book, later ones set quantities."""
    books: dict[str, Book] = {}
    for payload in frames:
        try:
            msg = json.loads(payload)
            if msg.get("type") != "l2_updates":
                continue
            if "trades" in msg:
                books[msg["symbol"]] = ({}, {})
            bids, asks = books[msg["symbol"]]
            for side, price, quantity in msg["changes"]:
                set_levels(bids if side == "buy" else asks, [(price, quantity)])
        except ValueError:
            continue  # an unreadable update
    return books


async def test_recorded_session(redis):
    await check_recorded_session(redis, "gemini", SESSION, rebuild(raw_frames(SESSION)), min_trades=10)


async def test_unreadable_update_is_a_gap_then_a_resync(redis, tmp_path):
    folder = tmp_path / "gemini" / "session"

    def pick(payload: str) -> bool:
        return payload.startswith('{"type":"l2_updates","symbol":"ETHEUR"') and '"trades"' not in payload

    count = sum(map(pick, raw_frames(SESSION)))
    copy_with_one_frame_changed(SESSION, folder, pick, lambda p: p.replace('"]', 'x"]', 1), count - 3)
    run = await check_gap_and_resync(redis, "gemini", folder, "ETH/EUR")
    own = run.connectors[0].feed.books["ETH/EUR"]
    assert (own.bids, own.asks) == rebuild(raw_frames(folder))["ETHEUR"]
