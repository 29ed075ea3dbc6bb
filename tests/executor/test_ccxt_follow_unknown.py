"""An order an earlier run left resting that the next run cannot read at start-up is reported `unknown` (its market
takes no new order) and looked up. When the lookup finds it as that earlier run last stored it, that report is the
same as one already stored — and it must still count: it was dropped as a duplicate, so the order's row stayed
`unknown` (after every later restart too) and `orders:events` never said the order was back."""

from __future__ import annotations

import time

import pytest

from shared.schemas import OrderEvent, OrderIntent, encode, streams
from tests.executor.fake_venue.harness import fake_venue
from tests.executor.test_ccxt_executor import (
    VENUE,
    live_executor,
    live_settings,
    messages,
    venue_book,
    wait_for,
)

pytestmark = pytest.mark.integration


async def test_a_resting_order_found_again_after_a_failed_read_is_accepted_again(isolated: tuple[str, str]) -> None:
    async with fake_venue(**VENUE) as (fake, cfg):
        settings = live_settings(cfg)
        bid = float(fake.book["BTCUSDT"]["bids"][0][0])
        rest = OrderIntent("rest", "binance", "BTC/USDT", "buy", "limit", 0.01, time.time_ns(), price=bid * 0.99)
        book = {streams.FIELD: encode(venue_book(fake.book["BTCUSDT"]))}
        async with live_executor(isolated, settings) as (executor, redis, db):
            await redis.xadd(streams.md_book("binance"), book)
            await wait_for(lambda: ("binance", "BTC/USDT") in executor.guard.mids, "the executor's first book")
            await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(rest)})
            resting = "SELECT 1 FROM orders WHERE client_order_id = 'rest' AND status = 'accepted'"
            await wait_for(lambda: db.fetch(resting), "the resting order stored as accepted")
        fake.orders_by_client_id("rest")[0]["_hidden"] = 1  # the next run's first read of it fails

        async with live_executor(isolated, settings) as (executor, redis, db):
            await redis.xadd(streams.md_book("binance"), book)
            await wait_for(lambda: ("binance", "BTC/USDT") in executor.guard.mids, "the next run's first book")

            async def statuses() -> list[str]:
                events = await messages(redis, streams.ORDERS_EVENTS, OrderEvent)
                return [e.status for e in events if e.client_order_id == "rest"]

            async def reported_unknown() -> bool:
                return "unknown" in await statuses()

            await wait_for(reported_unknown, "the failed read reported")
            back = "SELECT 1 FROM orders WHERE client_order_id = 'rest' AND status = 'accepted'"
            await wait_for(lambda: db.fetch(back), "the order's row accepted again")

            async def settled() -> list[str] | None:
                seen = await statuses()
                return seen if len(seen) >= 3 else None

            seen = await wait_for(settled, "the settling report published")
            assert ("binance", "BTC/USDT") not in executor.guard.unknown
            after = OrderIntent("after", "binance", "BTC/USDT", "buy", "limit", 0.01, time.time_ns(), price=bid * 0.98)
            await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(after)})
            placed = "SELECT status FROM orders WHERE client_order_id = 'after' AND status = 'accepted'"
            await wait_for(lambda: db.fetch(placed), "a new order on that market placed")
    assert seen == ["accepted", "unknown", "accepted"]
