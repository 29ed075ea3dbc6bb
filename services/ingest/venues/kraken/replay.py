"""How the replay exchange plays Kraken v1: ``subscribe`` / ``unsubscribe`` events per pair and
channel, answered with ``subscriptionStatus``; a book subscribed again is sent as a snapshot
(``as``/``bs``) of the book at the client's replay position, cut to the subscribed depth."""

from __future__ import annotations

import json
import time

from services.ingest.book import OrderBook, TextLevel
from services.ingest.capture import Record
from services.ingest.replay_rules import Client
from services.ingest.venues.kraken import channel_and_pair
from services.ingest.venues.kraken.schemas import book_parts
from services.ingest.venues.subscribed import SubscribeReplay


class KrakenReplay(SubscribeReplay):
    def subscription(self, text: str) -> tuple[list[str], list[str], list[str]] | None:
        try:
            req = json.loads(text)
            event, pairs, sub = req["event"], list(req["pair"]), dict(req["subscription"])
            name = sub["name"]
        except (ValueError, KeyError, TypeError) as exc:
            return [], [], [json.dumps({"event": "error", "errorMessage": f"Malformed request: {exc}"})]
        if event not in ("subscribe", "unsubscribe"):
            return None
        channel = f"book-{sub.get('depth', 10)}" if name == "book" else name
        kind = "book" if name == "book" else "trades" if name == "trade" else name
        keys = [f"{kind}:{p}" for p in pairs]
        status = "subscribed" if event == "subscribe" else "unsubscribed"
        replies = [
            json.dumps(
                {
                    "channelID": 1000 + i,
                    "channelName": channel,
                    "event": "subscriptionStatus",
                    "pair": p,
                    "status": status,
                    "subscription": sub,
                }
            )
            for i, p in enumerate(pairs)
        ]
        return (keys, [], replies) if event == "subscribe" else ([], keys, replies)

    def key(self, record: Record) -> str | None:
        found = channel_and_pair(record.data)
        if found is None:
            return "" if '"subscriptionStatus"' in record.data else None
        channel, pair = found
        kind = "book" if channel.startswith("book-") else "trades" if channel == "trade" else channel
        return f"{kind}:{pair}"

    def book_event(self, record: Record) -> tuple[str, bool, list[TextLevel], list[TextLevel]] | None:
        found = channel_and_pair(record.data)
        if found is None or not found[0].startswith("book-"):
            return None
        snapshot, bids, asks, _, _ = book_parts(json.loads(record.data))
        return found[1], snapshot, bids, asks

    def snapshot_frames(self, client: Client, venue_symbol: str, book: OrderBook) -> list[str]:
        depth = 1000
        bids, asks = book.top_text(depth)
        now = f"{time.time():.6f}"
        body = {"as": [[p, a, now] for p, a in asks], "bs": [[p, a, now] for p, a in bids]}
        return [json.dumps([1000, body, f"book-{depth}", venue_symbol], separators=(",", ":"))]
