"""The generated market of `--mode synth` through the replay exchange and the production Binance
connector: every trade arrives as `synth` SYN/USDT at the path's price, and the book the connector
keeps sits around the last price (so the paper exchange fills at it)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from services.ingest.feed import BusSink
from services.ingest.replay import ReplayServer
from services.ingest.synth import TICK, book_ticks, synth_session
from services.ingest.venues import NAMES, get
from shared.bus import RedisBus
from shared.config import BusSettings
from shared.publisher import Publisher
from shared.schemas import BookUpdate, Trade, streams
from shared.synth_market import SynthParams, prices
from tests.ingest.helpers import clear_streams, fast_settings, read_stream

pytestmark = pytest.mark.integration

PARAMS = SynthParams(seed=5)
MINUTES = 0.25  # 60 steps: 120 trades, 120 depth diffs


async def test_generated_market_reaches_the_bus_through_the_binance_connector(redis):
    await clear_streams(redis, "synth")
    server = ReplayServer({"synth": [synth_session(PARAMS, MINUTES)]}, speed=0)
    venue = get("synth")
    publisher = Publisher(RedisBus(redis, BusSettings()))
    publisher.start()
    async with server, aiohttp.ClientSession() as http:
        settings = server.venue_settings("synth")
        markets, _ = await venue.fetch_markets(http, settings.base_url_http)
        (connector,) = venue.connectors(settings, fast_settings(), BusSink(publisher, "synth"), markets, http=http)
        task = asyncio.create_task(connector.run())
        deadline = time.monotonic() + 30
        while not (
            server.finished["synth"]
            and connector.feed.frames >= server.frames_sent["synth"]
            and connector.feed.books
            and all(t.done() for t in connector._snapshot_tasks.values())
        ):
            assert time.monotonic() < deadline, f"replay not done: {dict(server.frames_sent)}"
            await asyncio.sleep(0.05)
        (book,) = connector.feed.books.values()
        best_bid, best_ask = book.top(1)[0][0][0], book.top(1)[1][0][0]
        connector.stop()
        await task
        await publisher.close()
    trades = [m for m in await read_stream(redis, streams.md_trades("synth")) if isinstance(m, Trade)]
    path = prices(int(MINUTES * 60 / PARAMS.step_s), PARAMS)
    assert len(trades) == 2 * len(path)
    assert {(t.exchange, t.symbol) for t in trades} == {("synth", "SYN/USDT")}
    assert [t.price for t in trades] == pytest.approx([round(p / TICK) * TICK for p in path.repeat(2)], abs=1e-9)
    assert [t.ts for t in trades] == sorted(t.ts for t in trades)  # exchange time never goes back: no loop
    bids, asks = book_ticks(float(path[-1]))
    assert (best_bid, best_ask) == pytest.approx((bids[0] * TICK, asks[0] * TICK))
    assert asks[0] - bids[0] == pytest.approx(2 * path[-1] * 1e-4 / TICK, abs=1)  # 1 bp each side
    books = [m for m in await read_stream(redis, streams.md_book("synth")) if isinstance(m, BookUpdate)]
    assert books and books[0].snapshot


def test_synth_is_a_venue_no_capture_is_read_as():
    assert "synth" not in NAMES and get("synth").exchange == "synth"
