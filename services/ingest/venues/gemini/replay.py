"""How the replay exchange plays Gemini v2: ``{"type":"subscribe","subscriptions":[{"name":"l2",
"symbols":[...]}]}`` (an ``l2`` subscription carries the symbol's book and trades); a symbol
subscribed again gets the whole book at the client's replay position as its first
``l2_updates`` (with the ``trades`` field, as Gemini sends it)."""

from __future__ import annotations

import json

from services.ingest.book import OrderBook, TextLevel
from services.ingest.capture import Record
from services.ingest.replay_rules import Client
from services.ingest.venues.gemini import kind_and_symbol
from services.ingest.venues.subscribed import SubscribeReplay


class GeminiReplay(SubscribeReplay):
    def subscription(self, text: str) -> tuple[list[str], list[str], list[str]] | None:
        try:
            req = json.loads(text)
            kind = req["type"]
            symbols = [s.upper() for sub in req["subscriptions"] if sub["name"] == "l2" for s in sub["symbols"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return [], [], [json.dumps({"type": "error", "reason": "InvalidJson", "message": str(exc)})]
        if kind not in ("subscribe", "unsubscribe"):
            return None
        keys = [f"{k}:{s}" for s in symbols for k in ("book", "trades")]
        return (keys, [], []) if kind == "subscribe" else ([], keys, [])

    def key(self, record: Record) -> str | None:
        found = kind_and_symbol(record.data)
        return f"{found[0]}:{found[1]}" if found else None

    def book_event(self, record: Record) -> tuple[str, bool, list[TextLevel], list[TextLevel]] | None:
        found = kind_and_symbol(record.data)
        if found is None or found[0] != "book":
            return None
        msg = json.loads(record.data)
        bids = [(p, q) for side, p, q in msg["changes"] if side == "buy"]
        asks = [(p, q) for side, p, q in msg["changes"] if side == "sell"]
        return msg["symbol"], "trades" in msg, bids, asks

    def snapshot_frames(self, client: Client, venue_symbol: str, book: OrderBook) -> list[str]:
        bids, asks = book.top_text(len(book))
        changes = [["buy", p, q] for p, q in bids] + [["sell", p, q] for p, q in asks]
        body = {"type": "l2_updates", "symbol": venue_symbol, "changes": changes, "trades": [], "auction_events": []}
        return [json.dumps(body, separators=(",", ":"))]
