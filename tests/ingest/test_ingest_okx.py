"""OKX v5: the recorded session through the production connector over the replay exchange,
books checked against an independent rebuild that verifies every recorded checksum; a wrong
checksum -> gap, resubscription, fresh snapshot, resynced."""

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

SESSION = DATA / "okx" / "cryptofeed-2022-05-13"


def _crc(bids: dict[str, str], asks: dict[str, str]) -> int:
    best_bids = sorted(bids, key=float, reverse=True)[:25]
    best_asks = sorted(asks, key=float)[:25]
    parts = []
    for i in range(max(len(best_bids), len(best_asks))):
        if i < len(best_bids):
            parts.append(f"{best_bids[i]}:{bids[best_bids[i]]}")
        if i < len(best_asks):
            parts.append(f"{best_asks[i]}:{asks[best_asks[i]]}")
    value = zlib.crc32(":".join(parts).encode())
    return value - 2**32 if value >= 2**31 else value


def rebuild(frames) -> tuple[dict[str, Book], int]:
    """OKX's documented rule on the strings: snapshot, updates (size "0" deletes), checksum."""
    books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    checked = 0
    for payload in frames:
        if not payload.startswith('{"arg":{"channel":"books"') or '"action"' not in payload:
            continue
        msg = json.loads(payload)
        inst, data = msg["arg"]["instId"], msg["data"][0]
        if msg["action"] == "snapshot":
            books[inst] = ({}, {})
        bids, asks = books[inst]
        for side, levels in ((bids, data["bids"]), (asks, data["asks"])):
            for price, size, *_ in levels:
                for p in [p for p in side if float(p) == float(price)]:
                    del side[p]
                if float(size):
                    side[price] = size
        assert _crc(bids, asks) == data["checksum"], f"{inst}: recorded checksum does not match the rebuild"
        checked += 1
    floats = {
        inst: ({float(p): float(v) for p, v in b.items()}, {float(p): float(v) for p, v in a.items()})
        for inst, (b, a) in books.items()
    }
    return floats, checked


async def test_recorded_session(redis):
    rebuilt, checked = rebuild(raw_frames(SESSION))
    assert len(rebuilt) == 3 and checked > 200
    run = await check_recorded_session(redis, "okx", SESSION, rebuilt, min_trades=50)
    assert run.connectors[0].feed.verified == checked
    assert {b.symbol for b in run.connectors[0].feed.books.values()} >= {"BTC/USDT", "UNI/USD:UNI"}


async def test_checksum_mismatch_is_a_gap_then_a_resync(redis, tmp_path):
    folder = tmp_path / "okx" / "session"

    def wrong_checksum(payload: str) -> str:
        msg = json.loads(payload)
        msg["data"][0]["checksum"] += 1
        return json.dumps(msg, separators=(",", ":"))

    pick = '"instId":"BTC-USDT"},"action":"update"'
    copy_with_one_frame_changed(SESSION, folder, lambda p: pick in p, wrong_checksum, nth=20)
    run = await check_gap_and_resync(redis, "okx", folder, "BTC/USDT")
    rebuilt, _ = rebuild(raw_frames(SESSION))
    own = run.connectors[0].feed.books["BTC/USDT"]
    assert (own.bids, own.asks) == rebuilt["BTC-USDT"]
