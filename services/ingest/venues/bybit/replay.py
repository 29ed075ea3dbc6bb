"""How the replay exchange plays Bybit v5: ``{"op":"subscribe","args":[topics]}`` and
``{"op":"ping"}`` answered as Bybit does; a book subscribed again is sent as a ``snapshot`` of the
book at the client's replay position, with the last ``u``; ``GET instruments-info`` lists the
capture's symbols (no v5 market list was recorded)."""

from __future__ import annotations

import json
import re
import time

from services.ingest.book import OrderBook, TextLevel
from services.ingest.capture import Record
from services.ingest.replay_rules import Client
from services.ingest.venues.bybit import topic_of
from services.ingest.venues.bybit.symbols import guess_unified
from services.ingest.venues.subscribed import SubscribeReplay

_U = re.compile(r'"u":(\d+)')
_DEPTH = re.compile(r"^orderbook\.(\d+)\.")


def _ack(op: str, success: bool = True, message: str = "") -> str:
    return json.dumps({"success": success, "ret_msg": message, "conn_id": "replay", "req_id": "", "op": op})


class BybitReplay(SubscribeReplay):
    def subscription(self, text: str) -> tuple[list[str], list[str], list[str]] | None:
        try:
            req = json.loads(text)
            op = req["op"]
            if op == "ping":
                return [], [], [_ack("ping", message="pong")]
            keys = [
                f"{'trades' if t.startswith('publicTrade.') else 'book'}:{t.rsplit('.', 1)[1]}" for t in req["args"]
            ]
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            return [], [], [_ack("subscribe", False, f"error:invalid request: {exc}")]
        if op not in ("subscribe", "unsubscribe"):
            return None
        return (keys, [], [_ack(op)]) if op == "subscribe" else ([], keys, [_ack(op)])

    def key(self, record: Record) -> str | None:
        found = topic_of(record.data)
        if found is None:
            return "" if record.data.startswith('{"success"') else None
        return f"{found[0]}:{found[1]}"

    def book_event(self, record: Record) -> tuple[str, bool, list[TextLevel], list[TextLevel]] | None:
        found = topic_of(record.data)
        if found is None or found[0] != "book":
            return None
        msg = json.loads(record.data)
        data = msg["data"]
        return data["s"], msg["type"] == "snapshot", [tuple(b) for b in data["b"]], [tuple(a) for a in data["a"]]

    def observe(self, client: Client, record: Record) -> None:
        super().observe(client, record)
        found = topic_of(record.data) if record.kind == "frame" else None
        if found is not None and found[0] == "book":
            m = _U.search(record.data)
            depth = _DEPTH.match(record.data[10:])
            if m:
                client.state.setdefault("u", {})[found[1]] = int(m.group(1))
            if depth:
                client.state.setdefault("depth", {})[found[1]] = depth.group(1)

    def snapshot_frames(self, client: Client, venue_symbol: str, book: OrderBook) -> list[str]:
        bids, asks = book.top_text(len(book))
        now = int(time.time() * 1000)
        depth = client.state.get("depth", {}).get(venue_symbol, "1000")
        data = {
            "s": venue_symbol,
            "b": [list(b) for b in bids],
            "a": [list(a) for a in asks],
            "u": client.state.get("u", {}).get(venue_symbol, 1),
            "seq": 0,
        }
        body = {"topic": f"orderbook.{depth}.{venue_symbol}", "type": "snapshot", "ts": now, "data": data, "cts": now}
        return [json.dumps(body, separators=(",", ":"))]

    def rest(self, path: str, query: dict[str, str], client: Client | None) -> tuple[int, str]:
        if not path.endswith("/instruments-info"):
            return super().rest(path, query, client)
        symbols = sorted({found[1] for r in self.frames if (found := topic_of(r.data))})
        listed = []
        for symbol in symbols:
            unified = guess_unified(symbol)
            if unified:
                base, _, rest = unified.partition("/")
                quote, _, settle = rest.partition(":")
                listed.append({"symbol": symbol, "baseCoin": base, "quoteCoin": quote, "settleCoin": settle})
        body = {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": listed}}
        return 200, json.dumps(body)
