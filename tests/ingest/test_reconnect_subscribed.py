"""Reconnects of subscribe-style venues (Kraken, Coinbase, OKX): the replay exchange cuts the
connection mid-stream (its ``--drop-after`` drill) -> the connector reconnects, subscribes again,
gets fresh snapshots and publishes no delta of a book between the cut and its new snapshot; a
venue that goes silent is reported stale, and the connector reconnects and resubscribes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from services.ingest.feed import CollectSink
from services.ingest.venues import get
from shared.schemas import BookUpdate, Status, Trade, streams
from tests.ingest import test_ingest_coinbase, test_ingest_kraken, test_ingest_okx
from tests.ingest.helpers import book_from_messages, fast_settings, replay_through_connector, statuses, trade_key
from tests.ingest.venue_checks import normalized, raw_frames

pytestmark = pytest.mark.integration

# exchange -> (recorded session, frames after which the first connection is cut, independent rebuild)
DRILLS: dict[str, tuple[Any, int, Any]] = {
    "kraken": (test_ingest_kraken.SESSION, 600, lambda frames: test_ingest_kraken.rebuild(frames)[0]),
    "coinbase": (test_ingest_coinbase.SESSION, 1500, test_ingest_coinbase.rebuild),
    "okx": (test_ingest_okx.SESSION, 150, lambda frames: test_ingest_okx.rebuild(frames)[0]),
}


@pytest.mark.parametrize("exchange", sorted(DRILLS))
async def test_dropped_connection_reconnects_resubscribes_and_resyncs(redis, exchange):
    path, drop_after, rebuild = DRILLS[exchange]
    run = await replay_through_connector(redis, exchange, path, drop_after=drop_after)
    connector = run.connectors[0]
    assert run.server.connections[exchange] == 2 and connector.connections == 2 and connector.reconnects == 1
    states = [s.state for s in statuses(run) if s.symbol is None]
    assert states == ["connected", "disconnected", "connected"], states
    cut = next(s for s in statuses(run) if s.state == "disconnected")
    assert "no close frame" in cut.detail

    # The exchange sends a connection nothing until it subscribes: the second connection
    # subscribed again, and the whole session reached Redis (trades of the first connection
    # may come twice; a venue with trade sequence numbers drops the repeats).
    trades = run.of(streams.md_trades(exchange), Trade)
    expected = [trade_key(m) for m in normalized(exchange, path) if m["type"] == "trade"]
    assert {trade_key(t) for t in trades} == set(expected)
    if exchange == "coinbase":
        assert [trade_key(t) for t in trades] == expected, "a trade re-sent after the reconnect was published twice"

    # Books: live before the cut; after it, each symbol's first message is a fresh snapshot
    # (nothing published across the cut), and the final book is the independent rebuild.
    books = run.of(streams.md_book(exchange), BookUpdate)
    before = [b for b in books if b.recv_ts < cut.ts]
    assert any(b.snapshot for b in before) and any(not b.snapshot for b in before), "cut before the books were live"
    feed = connector.feed
    for venue_symbol, (bids, asks) in rebuild(raw_frames(path)).items():
        symbol = feed.symbols.unified(venue_symbol) or venue_symbol
        after = [b for b in books if b.symbol == symbol and b.recv_ts > cut.ts]
        assert after and after[0].snapshot, f"{symbol}: a delta was published before the new snapshot"
        assert (feed.books[symbol].bids, feed.books[symbol].asks) == (bids, asks), symbol
        assert book_from_messages(books, symbol) == (bids, asks), symbol
    assert not [s for s in statuses(run) if s.state == "gap"]


class SilentVenue:
    """A websocket server that takes subscriptions and never answers; records what each
    connection sent, to see the connector subscribe again after it gives up on a stale one."""

    def __init__(self) -> None:
        self.received: list[list[str]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        frames: list[str] = []
        self.received.append(frames)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                frames.append(msg.data)
        return ws

    async def __aenter__(self) -> SilentVenue:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handler)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def subscriptions(frames: list[str]) -> list[Any]:
    """The subscribe requests among a connection's frames (pings and the like left out)."""
    out = []
    for frame in frames:
        obj = json.loads(frame)
        if obj.get("type") == "subscribe" or obj.get("event") == "subscribe" or obj.get("op") == "subscribe":
            out.append(obj)
    return out


@pytest.mark.parametrize("exchange", ["kraken", "coinbase", "okx"])
async def test_silent_feed_is_stale_and_resubscribed(exchange):
    venue = get(exchange)
    settings = fast_settings(stale_after_s=0.3)
    async with SilentVenue() as server:
        base = f"http://127.0.0.1:{server.port}"
        venue_settings = settings.venues[exchange].model_copy(
            update={"base_url_ws": f"ws://127.0.0.1:{server.port}", "base_url_http": base, "enabled": True}
        )
        sink = CollectSink()
        (connector,) = venue.connectors(venue_settings, settings, sink, venue.shipped_markets())
        task = asyncio.create_task(connector.run())
        try:
            for _ in range(100):
                await asyncio.sleep(0.05)
                if connector.connections >= 2 and len(server.received) >= 2 and server.received[1]:
                    break
        finally:
            connector.stop()
            await task
    states = [m.state for m in sink.of(Status)]
    assert states[:4] == ["connected", "stale", "disconnected", "connected"], states
    assert "no message" in next(m.detail for m in sink.of(Status) if m.state == "stale")
    first, second = server.received[0], server.received[1]
    assert subscriptions(first), f"{exchange}: the first connection sent no subscription: {first}"
    assert subscriptions(second) == subscriptions(first), "the new connection did not subscribe again"
