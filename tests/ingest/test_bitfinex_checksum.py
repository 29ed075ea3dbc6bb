"""Bitfinex book checksums (conf flag OB_CHECKSUM = 131072): ``[chanId, "cs", n]`` must equal the
signed CRC32 of ``bid.price:bid.amount:ask.price:ask.amount:...`` over the best 25 levels.

The string rule is checked against the vectors of Bitfinex's own client library
(bitfinexcom/bfx-api-node-models, test/lib/models/order_book.js: ``checksum`` tests); the
recorded session (captured without the flag) is checked with checksum frames computed here from
the numbers' wire text, independently of the feed's own formatting."""

from __future__ import annotations

import json
import re
import zlib

import pytest

from services.ingest.feed import CollectSink
from services.ingest.venues import get
from services.ingest.venues.bitfinex.config import CONF_FLAGS, OB_CHECKSUM, SEQ_ALL
from services.ingest.venues.bitfinex.schemas import js_number
from shared.schemas import Status
from tests.ingest.helpers import DATA, fast_settings
from tests.ingest.venue_checks import raw_frames

SESSION = DATA / "bitfinex" / "cryptofeed-2021-04-17"
CHAN = 17


def signed_crc32(text: str) -> int:
    value = zlib.crc32(text.encode())
    return value - 2**32 if value >= 2**31 else value


def subscribed_feed(sequenced: bool = False):
    venue = get("bitfinex")
    asked: list[str] = []
    sink = CollectSink()
    feed = venue.feed(venue.shipped_markets(), sink, request_snapshot=lambda s, d: asked.append(s))
    feed.on_frame(json.dumps({"event": "conf", "status": "OK", "flags": SEQ_ALL if sequenced else OB_CHECKSUM}), 1)
    feed.on_frame(json.dumps({"event": "subscribed", "channel": "book", "chanId": CHAN, "symbol": "tBTCUSD"}), 1)
    return feed, sink, asked


# (snapshot rows, update rows, the string Bitfinex's library checksums for the resulting book)
LIBRARY_VECTORS = [
    ([[6000, 1, 1], [5900, 1, 2], [6100, 1, -3], [6200, 1, -4]], [], "6000:1:6100:-3:5900:2:6200:-4"),
    ([[6000, 1, 1], [1.7e-8, 1, 2], [6100, 1, -3], [6200, 1, -4]], [], "6000:1:6100:-3:0.000000017:2:6200:-4"),
    (
        [[0.1, 1, 1], [0.09, 1, 5], [0.2, 1, -3], [0.3, 1, -4]],
        [[0.15, 1, -1], [0.089, 1, 1]],
        "0.1:1:0.15:-1:0.09:5:0.2:-3:0.089:1:0.3:-4",
    ),
]


@pytest.mark.parametrize(("snapshot", "updates", "text"), LIBRARY_VECTORS)
def test_checksum_matches_bitfinex_client_library_vectors(snapshot, updates, text):
    feed, _, asked = subscribed_feed()
    feed.on_frame(json.dumps([CHAN, snapshot]), 1)
    for row in updates:
        feed.on_frame(json.dumps([CHAN, row]), 2)
    feed.on_frame(json.dumps([CHAN, "cs", signed_crc32(text)]), 3)
    assert feed.checksummed and feed.verified == 1 and not asked
    assert feed.errors.total == 0


def test_checksum_mismatch_is_a_gap_and_a_resubscription():
    feed, sink, asked = subscribed_feed()
    snapshot, _, text = LIBRARY_VECTORS[0]
    feed.on_frame(json.dumps([CHAN, snapshot]), 1)
    feed.on_frame(json.dumps([CHAN, [6000, 1, 1.5]]), 2)  # the book changed; the venue's checksum says it didn't
    feed.on_frame(json.dumps([CHAN, "cs", signed_crc32(text)]), 3)
    assert feed.verified == 0 and asked == ["tBTCUSD"]
    [gap] = [m for m in sink.of(Status) if m.state == "gap"]
    assert gap.symbol == "BTC/USD" and "checksum mismatch" in gap.detail
    feed.on_frame(json.dumps([CHAN, [6000, 1, 2]]), 4)  # nothing applied until the new snapshot
    assert feed.live("BTC/USD") is None
    feed.on_frame(json.dumps([CHAN, snapshot]), 5)
    feed.on_frame(json.dumps([CHAN, "cs", signed_crc32(text)]), 6)
    assert feed.verified == 1 and [m.state for m in sink.of(Status)][-1] == "resynced"


@pytest.mark.parametrize("frame", ['[17,"cs"]', '[17,"cs","123"]', '[17,"cs",1.5]', '[17,"cs",null]'])
def test_unreadable_checksum_frames_are_counted(frame):
    feed, _, asked = subscribed_feed()
    feed.on_frame(json.dumps([CHAN, LIBRARY_VECTORS[0][0]]), 1)
    feed.on_frame(frame, 2)
    assert feed.errors.counts["invalid checksum"] == 1 and not asked


@pytest.mark.parametrize(
    ("value", "text"),  # ECMAScript Number::toString
    [(1e-7, "1e-7"), (1.5e-7, "1.5e-7"), (1e-6, "0.000001"), (2.505e-5, "0.00002505"), (1527.3, "1527.3"),
     (6000.0, "6000"), (-3.0, "-3"), (-198.49146486, "-198.49146486"), (1e21, "1e+21"),
     (1e20, "100000000000000000000")],
)  # fmt: skip
def test_amounts_are_written_as_javascript_writes_numbers(value, text):
    assert js_number(value) == text


def test_connector_asks_for_checksums():
    venue = get("bitfinex")
    settings = fast_settings()
    (connector,) = venue.connectors(settings.venues["bitfinex"], settings, CollectSink(), venue.shipped_markets())
    conf = json.loads(connector.subscribe_frames()[0])
    assert conf == {"event": "conf", "flags": CONF_FLAGS} and CONF_FLAGS & OB_CHECKSUM and CONF_FLAGS & SEQ_ALL


# -- the recorded session with checksum frames added -----------------------------------------------

_SEQ = re.compile(r",(\d+)\]$")


def with_checksums(frames: list[str]) -> tuple[list[str], int]:
    """The recorded frames with ``[chanId, "cs", n, seq]`` after every book frame, ``n`` computed
    from the levels' wire text (Bitfinex writes its numbers as JavaScript does; a price in
    exponent form is written out in full, as its client library does); SEQ_ALL renumbered."""
    books: dict[int, dict[str, dict[float, tuple[str, str]]]] = {}
    out: list[str] = []
    seq = 0
    added = 0
    for payload in frames:
        if payload.startswith("{"):
            msg = json.loads(payload)
            if msg.get("event") == "subscribed" and msg["channel"] == "book":
                books[msg["chanId"]] = {"bids": {}, "asks": {}}
            out.append(payload)
            continue
        seq += 1
        out.append(_SEQ.sub(f",{seq}]", payload))
        msg = json.loads(payload, parse_float=str, parse_int=str)
        chan = int(msg[0])
        if chan not in books or not isinstance(msg[1], list):
            continue
        rows = msg[1] if isinstance(msg[1][0], list) else [msg[1]]
        book = books[chan]
        if rows is msg[1]:
            book["bids"], book["asks"] = {}, {}
        for price, count, amount in rows:
            side = book["bids"] if float(amount) > 0 else book["asks"]
            if int(count) == 0:
                side.pop(float(price), None)
            else:
                side[float(price)] = (format(float(price), "f").rstrip("0").rstrip(".") if "e" in price else price,
                                      amount)  # fmt: skip
        bids = [book["bids"][p] for p in sorted(book["bids"], reverse=True)[:25]]
        asks = [book["asks"][p] for p in sorted(book["asks"])[:25]]
        parts = []
        for i in range(max(len(bids), len(asks))):
            for side in (bids, asks):
                if i < len(side):
                    parts.extend(side[i])
        seq += 1
        out.append(json.dumps([chan, "cs", signed_crc32(":".join(parts)), seq]))
        added += 1
    return out, added


def test_recorded_session_with_checksum_frames_verifies_every_one():
    frames, added = with_checksums(list(raw_frames(SESSION)))
    assert added > 500
    venue = get("bitfinex")
    sink = CollectSink()
    asked: list[str] = []
    feed = venue.feed(venue.shipped_markets(), sink, request_snapshot=lambda s, d: asked.append(s))
    for frame in frames:
        feed.on_frame(frame, 1)
    assert feed.sequenced and feed.verified == added
    assert not asked and not [m for m in sink.of(Status) if m.state == "gap"]
    assert feed.errors.total == 0, feed.errors.counts
