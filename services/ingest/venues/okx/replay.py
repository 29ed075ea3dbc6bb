"""How the replay exchange plays OKX v5: ``{"op":"subscribe","args":[...]}`` answered per arg with
``{"event":"subscribe","arg":...}``, "ping" with "pong"; a book subscribed again is sent as a
``snapshot`` of the book at the client's replay position, with its checksum and last seqId."""

from __future__ import annotations

import json
import re
import time

from services.ingest.book import OrderBook, TextLevel
from services.ingest.capture import Record
from services.ingest.replay_rules import Client
from services.ingest.venues.okx import channel_and_inst
from services.ingest.venues.okx.config import BOOK_CHANNELS, CHECKSUM_LEVELS, TRADE_CHANNEL
from services.ingest.venues.okx.schemas import checksum
from services.ingest.venues.subscribed import SubscribeReplay

_SEQ = re.compile(r'"seqId":(-?\d+)')


def _kind(channel: str) -> str:
    return "book" if channel in BOOK_CHANNELS else "trades" if channel == TRADE_CHANNEL else channel


class OkxReplay(SubscribeReplay):
    def subscription(self, text: str) -> tuple[list[str], list[str], list[str]] | None:
        if text == "ping":
            return [], [], ["pong"]
        try:
            req = json.loads(text)
            op, args = req["op"], list(req["args"])
            keys = [f"{_kind(a['channel'])}:{a['instId']}" for a in args]
        except (ValueError, KeyError, TypeError) as exc:
            return [], [], [json.dumps({"event": "error", "code": "60012", "msg": f"Invalid request: {exc}"})]
        if op not in ("subscribe", "unsubscribe"):
            return None
        replies = [json.dumps({"event": op, "arg": a}) for a in args]
        return (keys, [], replies) if op == "subscribe" else ([], keys, replies)

    def key(self, record: Record) -> str | None:
        found = channel_and_inst(record.data)
        if found is None:
            return "" if record.data.startswith('{"event"') else None
        return f"{_kind(found[0])}:{found[1]}"

    def book_event(self, record: Record) -> tuple[str, bool, list[TextLevel], list[TextLevel]] | None:
        found = channel_and_inst(record.data)
        if found is None or found[0] not in BOOK_CHANNELS:
            return None
        msg = json.loads(record.data)
        data = msg["data"][0]
        bids = [(b[0], b[1]) for b in data["bids"]]
        asks = [(a[0], a[1]) for a in data["asks"]]
        return found[1], msg.get("action") == "snapshot", bids, asks

    def observe(self, client: Client, record: Record) -> None:
        super().observe(client, record)
        m = _SEQ.search(record.data) if record.kind == "frame" else None
        if m:  # the resync snapshot carries the seqId of the last update the client's replay passed
            found = channel_and_inst(record.data)
            if found is not None and found[0] in BOOK_CHANNELS:
                client.state.setdefault("seq", {})[found[1]] = int(m.group(1))

    def snapshot_frames(self, client: Client, venue_symbol: str, book: OrderBook) -> list[str]:
        bids, asks = book.top_text(400)
        data: dict[str, object] = {
            "asks": [[p, s, "0", "1"] for p, s in asks],
            "bids": [[p, s, "0", "1"] for p, s in bids],
            "ts": str(int(time.time() * 1000)),
            "checksum": checksum(*book.top_text(CHECKSUM_LEVELS)),
        }
        seq = client.state.get("seq", {}).get(venue_symbol)
        if seq is not None:
            data.update(seqId=seq, prevSeqId=-1)
        body = {"arg": {"channel": "books", "instId": venue_symbol}, "action": "snapshot", "data": [data]}
        return [json.dumps(body, separators=(",", ":"))]
