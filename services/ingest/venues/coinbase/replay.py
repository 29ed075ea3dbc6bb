"""How the replay exchange plays Coinbase Exchange: subscribe / unsubscribe frames by product
and channel, answered with ``subscriptions``; a book subscribed again is sent as a ``snapshot``
of the book at the client's replay position (what Coinbase sends on a resubscription)."""

from __future__ import annotations

import json

from services.ingest.book import OrderBook, TextLevel
from services.ingest.capture import Record
from services.ingest.replay_rules import Client
from services.ingest.venues.coinbase.config import BOOK_CHANNELS, TRADE_CHANNEL
from services.ingest.venues.subscribed import SubscribeReplay


def _key(channel: str, product: str) -> str:
    if channel in BOOK_CHANNELS:
        return f"book:{product}"
    if channel == TRADE_CHANNEL:
        return f"trades:{product}"
    return f"{channel}:{product}"


class CoinbaseReplay(SubscribeReplay):
    def subscription(self, text: str) -> tuple[list[str], list[str], list[str]] | None:
        try:
            req = json.loads(text)
            kind = req["type"]
            products = list(req.get("product_ids") or [])
            keys = []
            for channel in req["channels"]:
                if isinstance(channel, dict):
                    keys += [_key(channel["name"], p) for p in channel.get("product_ids") or products]
                else:
                    keys += [_key(channel, p) for p in products]
        except (ValueError, KeyError, TypeError) as exc:
            return [], [], [json.dumps({"type": "error", "message": "Failed to subscribe", "reason": str(exc)})]
        if kind not in ("subscribe", "unsubscribe"):
            return None
        ack = json.dumps({"type": "subscriptions", "channels": []})
        return (keys, [], [ack]) if kind == "subscribe" else ([], keys, [ack])

    def key(self, record: Record) -> str | None:
        data = record.data
        if not data.startswith('{"type":"'):
            return None
        kind = data[9 : data.index('"', 9)]
        if kind == "subscriptions":
            return ""
        product = data.partition('"product_id":"')[2].partition('"')[0]
        if kind in ("snapshot", "l2update"):
            return f"book:{product}"
        if kind in ("match", "last_match"):
            return f"trades:{product}"
        return f"{kind}:{product}"

    def book_event(self, record: Record) -> tuple[str, bool, list[TextLevel], list[TextLevel]] | None:
        if not record.data.startswith(('{"type":"snapshot"', '{"type":"l2update"')):
            return None
        msg = json.loads(record.data)
        if msg["type"] == "snapshot":
            return msg["product_id"], True, [tuple(x) for x in msg["bids"]], [tuple(x) for x in msg["asks"]]
        bids = [(p, a) for side, p, a in msg["changes"] if side == "buy"]
        asks = [(p, a) for side, p, a in msg["changes"] if side == "sell"]
        return msg["product_id"], False, bids, asks

    def snapshot_frames(self, client: Client, venue_symbol: str, book: OrderBook) -> list[str]:
        bids, asks = book.top_text(len(book))
        body = {
            "type": "snapshot",
            "product_id": venue_symbol,
            "asks": [list(a) for a in asks],
            "bids": [list(b) for b in bids],
        }
        return [json.dumps(body, separators=(",", ":"))]
