"""Bitfinex v2: the recorded session (SEQ_ALL numbering) through the production connector over
the replay exchange, against an independent rebuild; a frame deleted from the recording leaves a
hole in the connection sequence -> every book gaps, is resubscribed and resynced."""

from __future__ import annotations

import json

import pytest

from services.ingest.feed import CollectSink
from services.ingest.venues import get
from shared.schemas import BookUpdate, Trade, streams
from tests.ingest.helpers import DATA, book_from_messages, replay_through_connector, statuses
from tests.ingest.venue_checks import Book, check_recorded_session, copy_with_one_frame_changed, raw_frames

SESSION = DATA / "bitfinex" / "cryptofeed-2021-04-17"


def rebuild(frames) -> dict[str, Book]:
    """Bitfinex's book rule: [price, count, amount]; amount > 0 bid, < 0 ask; count 0 deletes."""
    channels: dict[int, str] = {}
    books: dict[str, Book] = {}
    for payload in frames:
        msg = json.loads(payload)
        if isinstance(msg, dict):
            if msg.get("event") == "subscribed" and msg["channel"] == "book":
                channels[msg["chanId"]] = msg["symbol"]
            continue
        if msg[0] not in channels or msg[1] == "hb":
            continue
        symbol = channels[msg[0]]
        rows = msg[1] if isinstance(msg[1][0], list) else [msg[1]]
        if rows is msg[1]:
            books[symbol] = ({}, {})
        bids, asks = books[symbol]
        for price, count, amount in rows:
            side = bids if amount > 0 else asks
            if count == 0:
                side.pop(float(price), None)
            else:
                side[float(price)] = abs(float(amount))
    return books


@pytest.mark.integration
async def test_recorded_session(redis):
    run = await check_recorded_session(redis, "bitfinex", SESSION, rebuild(raw_frames(SESSION)), min_trades=0)
    feed = run.connectors[0].feed
    assert feed.sequenced and feed.ignored["trades snapshot"] == 7


def test_trade_execution_frame():
    """The recording has only the trade history sent on subscribing (not published); a recorded
    history row sent as a live ``te`` execution is a trade, taker side from the amount's sign."""
    venue = get("bitfinex")
    frames = list(raw_frames(SESSION))
    subscribed = next(json.loads(f) for f in frames if '"channel":"trades"' in f and '"subscribed"' in f)
    history = next(json.loads(f) for f in frames if f.startswith(f"[{subscribed['chanId']},[["))
    row = history[1][0]
    sink = CollectSink()
    feed = venue.feed(venue.shipped_markets(), sink)
    feed.on_frame(json.dumps(subscribed), 1)
    feed.on_frame(json.dumps([subscribed["chanId"], "te", row]), 2)
    feed.on_frame(json.dumps([subscribed["chanId"], "tu", row]), 3)  # the same trade again
    [trade] = sink.of(Trade)
    assert trade.trade_id == str(row[0]) and trade.ts == row[1] * 1_000_000
    assert trade.amount == abs(row[2]) and trade.price == row[3]
    assert trade.side == ("buy" if row[2] > 0 else "sell")
    assert trade.symbol == venue.shipped_markets().unified(subscribed["symbol"])


@pytest.mark.integration
async def test_sequence_hole_is_a_gap_then_a_resync_of_every_book(redis, tmp_path):
    folder = tmp_path / "bitfinex" / "session"
    iot_chan = next(
        json.loads(f)["chanId"] for f in raw_frames(SESSION) if '"channel":"book"' in f and '"tIOTETH"' in f
    )

    def pick(payload: str) -> bool:
        return payload.startswith(f"[{iot_chan},[") and not payload.startswith(f"[{iot_chan},[[")

    count = sum(map(pick, raw_frames(SESSION)))
    copy_with_one_frame_changed(SESSION, folder, pick, lambda p: None, count // 2)
    run = await replay_through_connector(redis, "bitfinex", folder)
    gaps = [s for s in statuses(run) if s.state == "gap"]
    resynced = {s.symbol for s in statuses(run) if s.state == "resynced"}
    assert gaps and all("sequence jumped" in s.detail for s in gaps)
    assert {s.symbol for s in gaps} == resynced
    assert "IOT/ETH" in resynced or "IOTA/ETH" in resynced
    feed = run.connectors[0].feed
    books = run.of(streams.md_book("bitfinex"), BookUpdate)
    for gap in gaps:
        mine = [b for b in books if b.symbol == gap.symbol]
        after = [i for i, b in enumerate(mine) if b.snapshot and b.recv_ts > gap.ts]
        assert len(after) == 1
        assert [b for b in mine[: after[0]] if b.recv_ts > gap.ts] == []
        own = feed.books[gap.symbol]
        assert book_from_messages(books, gap.symbol) == (own.bids, own.asks)
