"""How the replay exchange plays Binance: combined streams, SUBSCRIBE frames, depth snapshots.

A client subscribes in the URL (``/stream?streams=a/b``, ``/ws/a``) or with
``{"method":"SUBSCRIBE","params":[...],"id":1}`` (answered ``{"result":null,"id":1}``), and
receives the recorded frames of those streams only. A depth stream matches whatever update
speed was recorded (``btcusdt@depth`` = ``@depth@100ms`` = ``@depth@0ms``).

``GET .../depth?symbol=X``: a connection's first request for X is answered with the snapshot
recorded in the capture, verbatim (so a replay at any speed syncs exactly as the recording did).
Later requests - a resync after a gap - are answered with the book *as it stands at the
client's replay position*, kept by applying the recorded diffs to the recorded snapshot: what
Binance itself would answer at that moment.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Sequence

import msgspec

from services.ingest.book import OrderBook
from services.ingest.capture import Record, Session
from services.ingest.replay_rules import Client, ReplayRules
from services.ingest.venues.base import Venue
from services.ingest.venues.binance.schemas import DepthEvent, envelope_decoder, snapshot_decoder

_STREAM = re.compile(r'^\{"stream":"([^"]+)"')


def stream_key(stream: str) -> str:
    """``btcusdt@depth@100ms`` -> ``btcusdt@depth``: depth speeds are interchangeable here."""
    symbol, _, channel = stream.partition("@")
    if channel.startswith("depth") and not channel[5:6].isdigit():
        return f"{symbol}@depth"
    return stream


class BinanceReplay(ReplayRules):
    def __init__(self, venue: Venue, sessions: Sequence[Session]) -> None:
        super().__init__(venue, sessions)
        self.futures = getattr(venue, "spec").sequence == "futures"  # noqa: B009
        self._recorded: dict[str, list[Record]] = {}
        self._snapshot_of: dict[int, str] = {}  # id(record) -> symbol, for recorded snapshots
        last_depth: str | None = None
        for record in self.timeline:
            if record.kind == "rest" and "/depth" in record.url and "symbol=" in record.url:
                symbol = record.url.split("symbol=", 1)[1].split("&", 1)[0].upper()
                self._recorded.setdefault(symbol, []).append(record)
                self._snapshot_of[id(record)] = symbol
            elif record.kind == "frame":
                m = _STREAM.match(record.data)
                if m and "@depth" in m.group(1):
                    last_depth = m.group(1).split("@", 1)[0].upper()
                elif record.data.startswith('{"lastUpdateId"') and last_depth:  # hftbacktest: in-stream snapshot
                    self._recorded.setdefault(last_depth, []).append(record)
                    self._snapshot_of[id(record)] = last_depth
        self._depth_clients: dict[str, Client] = {}  # symbol -> the latest client subscribed to its depth

    # -- subscriptions -------------------------------------------------------------------------

    def new_client(self, client: Client) -> None:
        streams: list[str] = []
        if "streams" in client.query:
            streams = [s for s in client.query["streams"].split("/") if s]
        elif client.path.startswith("/ws/"):
            streams = [s for s in client.path[4:].split("/") if s]
        client.state["books"] = {}
        if streams:
            self._subscribe(client, streams)

    def _subscribe(self, client: Client, streams: list[str]) -> None:
        for stream in streams:
            key = stream_key(stream)
            client.subscriptions.add(key)
            if key.endswith("@depth"):
                self._depth_clients[key.split("@", 1)[0].upper()] = client
        client.ready.set()

    def on_client_frame(self, client: Client, text: str) -> list[str]:
        try:
            request = json.loads(text)
            method, params, rid = request["method"], request.get("params", []), request.get("id")
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                raise ValueError("params must be a list of stream names")
        except (ValueError, KeyError, TypeError) as exc:
            return [json.dumps({"error": {"code": 2, "msg": f"Invalid request: {exc}"}, "id": None})]
        if method == "SUBSCRIBE":
            self._subscribe(client, params)
            return [json.dumps({"result": None, "id": rid})]
        if method == "UNSUBSCRIBE":
            client.subscriptions.difference_update(stream_key(p) for p in params)
            return [json.dumps({"result": None, "id": rid})]
        if method == "LIST_SUBSCRIPTIONS":
            return [json.dumps({"result": sorted(client.subscriptions), "id": rid})]
        return [json.dumps({"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": rid})]

    def wants(self, client: Client, record: Record) -> bool:
        m = _STREAM.match(record.data)
        return m is not None and stream_key(m.group(1)) in client.subscriptions

    # -- the exchange's own book, for REST snapshots ----------------------------------------------

    def observe(self, client: Client, record: Record) -> None:
        books: dict[str, OrderBook] = client.state["books"]
        symbol = self._snapshot_of.get(id(record))
        if symbol is not None:
            if symbol not in books:  # from the first recorded snapshot on, the exchange knows the book
                try:
                    snap = snapshot_decoder.decode(record.data)
                except msgspec.DecodeError:
                    return
                books[symbol] = OrderBook(symbol)
                books[symbol].load(snap.bids, snap.asks, snap.lastUpdateId)
            return
        if record.kind != "frame" or "@depth" not in record.data[:60]:
            return
        try:
            event = envelope_decoder.decode(record.data).data
        except msgspec.DecodeError:
            return
        if type(event) is DepthEvent:
            book = books.get(event.s)
            if book is not None and event.u > book.seq:
                book.apply(event.b, event.a, event.u)

    def rest(self, path: str, query: dict[str, str], client: Client | None) -> tuple[int, str]:
        if path.endswith("/depth"):
            symbol = query.get("symbol", "").upper()
            limit = int(query.get("limit", "100") or 100)
            owner = self._depth_clients.get(symbol) or client
            book = owner.state.get("books", {}).get(symbol) if owner else None
            served: set[str] = owner.state.setdefault("served", set()) if owner else set()
            first_ask = symbol not in served
            served.add(symbol)
            if book is not None and not (first_ask and self._recorded.get(symbol)):
                bids, asks = book.top(limit)
                body = {"lastUpdateId": book.seq, "bids": _levels(bids), "asks": _levels(asks)}
                return 200, json.dumps(body, separators=(",", ":"))
            recorded = self._recorded.get(symbol)
            if recorded:
                return 200, recorded[0].data
            return 400, json.dumps({"code": -1121, "msg": "Invalid symbol."})
        if path.endswith("/exchangeInfo"):
            for session in self.sessions:
                for record in session.rest("exchangeInfo"):
                    return 200, record.data
            spec = getattr(self.venue, "spec")  # noqa: B009
            from importlib import resources

            data = resources.files("services.ingest.venues.binance").joinpath("markets", spec.markets_file).read_bytes()
            return 200, gzip.decompress(data).decode()
        return super().rest(path, query, client)


def _levels(levels: list[tuple[float, float]]) -> list[list[str]]:
    return [[repr(p), repr(q)] for p, q in levels]
