"""How the replay exchange plays Bitstamp: ``bts:subscribe`` per channel, answered with
``bts:subscription_succeeded``. ``GET /api/v2/order_book/<pair>/`` answers a connection's first
request with the recorded snapshot, later ones (a resync) with the book at the client's replay
position: the recorded snapshot plus every recorded diff after it, as Bitstamp would."""

from __future__ import annotations

import json

import msgspec

from services.ingest.book import OrderBook
from services.ingest.capture import Record
from services.ingest.replay_rules import Client
from services.ingest.venues.bitstamp import _SNAPSHOT_URL, channel_of
from services.ingest.venues.bitstamp.config import BOOK_CHANNEL, TRADE_CHANNEL
from services.ingest.venues.bitstamp.schemas import book_decoder, snapshot_decoder
from services.ingest.venues.subscribed import SubscribeReplay


class BitstampReplay(SubscribeReplay):
    def subscription(self, text: str) -> tuple[list[str], list[str], list[str]] | None:
        try:
            req = json.loads(text)
            event, channel = req["event"], req["data"]["channel"]
        except (ValueError, KeyError, TypeError) as exc:
            return [], [], [json.dumps({"event": "bts:error", "channel": "", "data": {"message": str(exc)}})]
        if event not in ("bts:subscribe", "bts:unsubscribe"):
            return None
        if channel.startswith(BOOK_CHANNEL):
            key = f"book:{channel[len(BOOK_CHANNEL) :]}"
        elif channel.startswith(TRADE_CHANNEL):
            key = f"trades:{channel[len(TRADE_CHANNEL) :]}"
        else:
            key = channel
        done = "bts:subscription_succeeded" if event == "bts:subscribe" else "bts:unsubscription_succeeded"
        reply = json.dumps({"event": done, "channel": channel, "data": {}})
        return ([key], [], [reply]) if event == "bts:subscribe" else ([], [key], [reply])

    def key(self, record: Record) -> str | None:
        found = channel_of(record.data)
        if found is None:
            return "" if '"bts:' in record.data[:60] or "bts:" in record.data[-80:] else None
        return f"{found[0]}:{found[1]}"

    def observe(self, client: Client, record: Record) -> None:
        books: dict[str, OrderBook] = client.state["books"]
        if record.kind == "rest":
            m = _SNAPSHOT_URL.search(record.url)
            if m and m.group(1) not in books:
                try:
                    snap = snapshot_decoder.decode(record.data)
                except msgspec.DecodeError:
                    return
                book = books[m.group(1)] = OrderBook(m.group(1))
                book.load(snap.bids, snap.asks, snap.microtimestamp)
            return
        found = channel_of(record.data) if record.kind == "frame" else None
        if found is None or found[0] != "book" or found[1] not in books:
            return
        try:
            data = book_decoder.decode(record.data).data
        except msgspec.DecodeError:
            return
        book = books[found[1]]
        if data.microtimestamp > book.seq:
            book.apply(data.bids, data.asks, data.microtimestamp)

    def rest(self, path: str, query: dict[str, str], client: Client | None) -> tuple[int, str]:
        m = _SNAPSHOT_URL.search(path)
        if m is None or client is None:
            return super().rest(path, query, client)
        pair = m.group(1)
        served: set[str] = client.state.setdefault("served", set())
        book = client.state["books"].get(pair)
        if pair not in served or book is None:
            served.add(pair)
            return super().rest(path.rstrip("/"), query, client)  # recorded with or without the slash
        bids, asks = book.levels()
        mt = book.seq
        body = {
            "timestamp": str(mt // 1_000_000),
            "microtimestamp": str(mt),
            "bids": [[repr(p), repr(a)] for p, a in bids],
            "asks": [[repr(p), repr(a)] for p, a in asks],
        }
        return 200, json.dumps(body)
