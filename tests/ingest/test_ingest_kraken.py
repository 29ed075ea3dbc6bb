"""Kraken v1: the recorded session through the production connector over the replay exchange,
books checked against an independent rebuild that also verifies every recorded CRC32; a frame
with a wrong checksum -> gap, resubscription, fresh snapshot, resynced."""

from __future__ import annotations

import json
import zlib

import pytest

from tests.ingest.helpers import DATA
from tests.ingest.venue_checks import (
    Book,
    check_gap_and_resync,
    check_recorded_session,
    copy_with_one_frame_changed,
    raw_frames,
)

pytestmark = pytest.mark.integration

SESSION = DATA / "kraken" / "cryptofeed-2021-04-17"


def _crc(bids: dict[str, str], asks: dict[str, str]) -> int:
    def digits(s: str) -> str:
        return s.replace(".", "").lstrip("0")

    best_asks = sorted(asks, key=float)[:10]
    best_bids = sorted(bids, key=float, reverse=True)[:10]
    text = "".join(digits(p) + digits(asks[p]) for p in best_asks)
    text += "".join(digits(p) + digits(bids[p]) for p in best_bids)
    return zlib.crc32(text.encode())


def rebuild(frames) -> tuple[dict[str, Book], int]:
    """Kraken's documented book rule, on the strings: snapshot, updates, truncate to depth, CRC32."""
    books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    checked = 0
    for payload in frames:
        msg = json.loads(payload)
        if not (isinstance(msg, list) and str(msg[-2]).startswith("book-")):
            continue
        depth, pair = int(msg[-2][5:]), msg[-1]
        if "as" in msg[1]:
            books[pair] = ({}, {})
        bids, asks = books[pair]
        for part in msg[1:-2]:
            for key, levels in part.items():
                if key == "c":
                    continue
                side = bids if key.startswith("b") else asks
                for price, volume, *_ in levels:
                    price_f = float(price)
                    for p in [p for p in side if float(p) == price_f]:
                        del side[p]
                    if float(volume):
                        side[price] = volume
        for side, worst in ((bids, min), (asks, max)):
            while len(side) > depth:
                del side[worst(side, key=float)]
        if "c" in msg[-3]:
            assert _crc(bids, asks) == int(msg[-3]["c"]), f"{pair}: recorded checksum does not match the rebuild"
            checked += 1
    floats = {
        pair: ({float(p): float(v) for p, v in b.items()}, {float(p): float(v) for p, v in a.items()})
        for pair, (b, a) in books.items()
    }
    return floats, checked


async def test_recorded_session(redis):
    rebuilt, checked = rebuild(raw_frames(SESSION))
    assert checked > 1000
    run = await check_recorded_session(redis, "kraken", SESSION, rebuilt, min_trades=5)
    assert run.connectors[0].feed.verified == checked


async def test_checksum_mismatch_is_a_gap_then_a_resync(redis, tmp_path):
    folder = tmp_path / "kraken" / "session"
    changed = copy_with_one_frame_changed(
        SESSION, folder, lambda p: p.endswith('"book-1000","XMR/USD"]') and '"c":"' in p,
        lambda p: p.replace('"c":"', '"c":"1'), nth=30,
    )  # fmt: skip
    assert '"c"' in changed
    run = await check_gap_and_resync(redis, "kraken", folder, "XMR/USD")
    # The book data itself was intact, so after the resync the book is the recorded one.
    rebuilt, _ = rebuild(raw_frames(SESSION))
    own = run.connectors[0].feed.books["XMR/USD"]
    assert (own.bids, own.asks) == rebuilt["XMR/USD"]
