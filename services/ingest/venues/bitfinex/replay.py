"""How the replay exchange plays Bitfinex v2: ``conf``, ``subscribe`` (answered with the recorded
``subscribed`` event, so channel ids match the recorded frames) and ``unsubscribe`` by chanId.

With SEQ_ALL, Bitfinex numbers every frame of a connection; a client subscribed to fewer
channels than the recording would see holes, so each frame is renumbered: its recorded number
minus the recorded frames this client was not sent, plus the frames the replay made up for it
(resync snapshots). A frame missing from the recording still leaves a hole, as it would live.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec

from services.ingest.book import OrderBook, TextLevel
from services.ingest.capture import Record, Session
from services.ingest.replay_rules import Client
from services.ingest.venues.base import Venue
from services.ingest.venues.bitfinex.schemas import event_decoder
from services.ingest.venues.subscribed import SubscribeReplay


def _array(record: Record) -> list | None:
    if record.kind != "frame" or not record.data.startswith("["):
        return None
    try:
        value = msgspec.json.decode(record.data)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, list) and value and isinstance(value[0], int) else None


def _text(value: float) -> str:
    return repr(float(value))


class BitfinexReplay(SubscribeReplay):
    def __init__(self, venue: Venue, sessions: Sequence[Session]) -> None:
        super().__init__(venue, sessions)
        self._subscribed: dict[tuple[str, str], tuple[int, str]] = {}  # (channel, symbol) -> (chanId, event)
        self._keys: dict[int, str] = {}  # chanId -> "book:tX" / "trades:tX" / ...
        self._arrays: dict[int, list] = {}  # id(record) -> its decoded array
        for record in self.frames:
            if record.data.startswith('{"event":"subscribed"'):
                event = event_decoder.decode(record.data)
                self._subscribed[(event.channel, event.symbol)] = (event.chanId, record.data)
                kind = {"book": "book", "trades": "trades"}.get(event.channel, event.channel)
                self._keys[event.chanId] = f"{kind}:{event.symbol}"
            else:
                array = _array(record)
                if array is not None:
                    self._arrays[id(record)] = array

    def subscription(self, text: str) -> tuple[list[str], list[str], list[str]] | None:
        try:
            req = json.loads(text)
            event = req["event"]
            if event == "conf":
                return [], [], [json.dumps({"event": "conf", "status": "OK", "flags": int(req.get("flags", 0))})]
            if event == "ping":
                return [], [], [json.dumps({"event": "pong", "cid": req.get("cid")})]
            if event == "unsubscribe":
                chan = int(req["chanId"])
                return (
                    [],
                    [self._keys.get(chan, "")],
                    [json.dumps({"event": "unsubscribed", "status": "OK", "chanId": chan})],
                )
            if event != "subscribe":
                return None
            channel, symbol = req["channel"], req["symbol"]
        except (ValueError, KeyError, TypeError) as exc:
            return [], [], [json.dumps({"event": "error", "msg": f"invalid request: {exc}", "code": 10300})]
        recorded = self._subscribed.get((channel, symbol))
        if recorded is None:
            return [], [], [json.dumps({"event": "error", "msg": "symbol: invalid", "code": 10300})]
        return [self._keys[recorded[0]]], [], [recorded[1]]

    def key(self, record: Record) -> str | None:
        array = self._arrays.get(id(record))
        if array is not None:
            return self._keys.get(array[0], "")
        return "" if record.data.startswith(('{"event":"subscribed"', '{"event":"conf"')) else None

    def book_event(self, record: Record) -> tuple[str, bool, list[TextLevel], list[TextLevel]] | None:
        array = self._arrays.get(id(record))
        key = self._keys.get(array[0], "") if array is not None else ""
        if array is None or not key.startswith("book:") or not isinstance(array[1], list) or not array[1]:
            return None
        snapshot = isinstance(array[1][0], list)
        bids: list[TextLevel] = []
        asks: list[TextLevel] = []
        for price, count, amount in array[1] if snapshot else [array[1]]:
            (bids if amount > 0 else asks).append((_text(price), "0" if count == 0 else _text(abs(amount))))
        return key[5:], snapshot, bids, asks

    def observe(self, client: Client, record: Record) -> None:
        super().observe(client, record)
        if id(record) in self._arrays and not self.wants(client, record):
            client.state["skipped"] = client.state.get("skipped", 0) + 1

    def render(self, client: Client, record: Record) -> str:
        array = self._arrays.get(id(record))
        if array is None or len(array) < 3 or not isinstance(array[-1], int):
            return record.data
        seq = array[-1] - client.state.get("skipped", 0) + client.state.get("extra", 0)
        client.state["last_seq"] = seq
        return json.dumps([*array[:-1], seq], separators=(",", ":"))

    def snapshot_frames(self, client: Client, venue_symbol: str, book: OrderBook) -> list[str]:
        chan = self._subscribed[("book", venue_symbol)][0]
        bids, asks = book.top_text(len(book))
        rows = [[float(p), 1, float(a)] for p, a in bids] + [[float(p), 1, -float(a)] for p, a in asks]
        client.state["extra"] = client.state.get("extra", 0) + 1
        seq = client.state["last_seq"] = client.state.get("last_seq", 0) + 1
        return [json.dumps([chan, rows, seq], separators=(",", ":"))]
