"""Reconnects: the replay exchange cuts the connection mid-stream -> the connector reconnects,
subscribes again and carries on; a feed that goes silent is reported stale and reconnected."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiohttp import web

from services.ingest.connector import backoff_delay
from services.ingest.feed import CollectSink
from services.ingest.venues import get
from shared.schemas import BookUpdate, Status, Trade, streams
from tests.ingest.helpers import SAMPLE, book_from_messages, fast_settings, rebuild_books, replay_through_connector
from tests.ingest.test_binance import normalized

pytestmark = pytest.mark.integration


async def test_dropped_connection_reconnects_and_resubscribes(redis):
    path = SAMPLE / "binance" / "hftbacktest"
    run = await replay_through_connector(redis, "binance", path, drop_after=700)
    connector = run.connectors[0]
    assert run.server.connections["binance"] == 2 and connector.connections == 2 and connector.reconnects == 1
    states = [s.state for s in run.of(streams.MD_STATUS, Status)]
    assert states[:3] == ["connected", "disconnected", "connected"], states

    # The second connection subscribed again (the exchange sent it frames only after that) and
    # the session was delivered in full: every trade of the capture, at least once.
    trades = run.of(streams.md_trades("binance"), Trade)
    expected = {(m["trade_id"], m["price"], m["amount"]) for m in normalized("binance", path) if m["type"] == "trade"}
    assert {(t.trade_id, t.price, t.amount) for t in trades} == expected
    # The book was rebuilt from a new snapshot after the reconnect (one per connection that got
    # its snapshot before the cut), and ends where the capture does.
    books = run.of(streams.md_book("binance"), BookUpdate)
    assert 1 <= sum(b.snapshot for b in books) <= 2
    assert books[0].snapshot
    ((bids, asks),) = rebuild_books(path, futures=False).values()
    assert connector.feed.books["BTC/USDT"].bids == bids and book_from_messages(books, "BTC/USDT") == (bids, asks)


async def test_silent_feed_is_stale_and_reconnected():
    connections = 0

    async def handler(request: web.Request) -> web.WebSocketResponse:
        nonlocal connections
        connections += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:  # subscribes, then hears nothing back
            pass
        return ws

    app = web.Application()
    app.router.add_get("/stream", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    venue = get("binance")
    settings = fast_settings(stale_after_s=0.3)
    venue_settings = settings.venues["binance"].model_copy(
        update={"base_url_ws": f"ws://127.0.0.1:{port}", "base_url_http": f"http://127.0.0.1:{port}"}
    )
    sink = CollectSink()
    (connector,) = venue.connectors(venue_settings, settings, sink, venue.shipped_markets())
    task = asyncio.create_task(connector.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if connector.connections >= 2:
                break
    finally:
        connector.stop()
        await task
        await runner.cleanup()
    states = [m.state for m in sink.of(Status)]
    assert states[:3] == ["connected", "stale", "disconnected"] and states.count("connected") >= 2
    assert "no message" in next(m.detail for m in sink.of(Status) if m.state == "stale")
    assert connections >= 2


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    rng = random.Random(7)
    delays = [[backoff_delay(a, 0.5, 30.0, rng) for _ in range(200)] for a in range(10)]
    assert all(0.5 <= d <= 30.0 for row in delays for d in row)
    assert max(delays[0]) <= 0.5 + 1e-9 and max(delays[3]) <= 4.0
    assert len({round(d, 6) for d in delays[5]}) > 100  # jittered, not a fixed schedule
    assert sum(delays[8]) / 200 > sum(delays[2]) / 200  # grows with the attempt
