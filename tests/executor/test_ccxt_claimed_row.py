"""An executor killed between the venue's answer and storing the order's intent: the venue's report may have made the
order's row first (no intent in it). The next run must still follow that order, or a fill of it is never recorded
(chaos runs lost a fill this way: the row said `accepted` for good)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal
from typing import Any

import pytest

from services.executor.gateways import build_gateway
from services.executor.service import Executor
from services.executor.store import ExecutorStore
from shared.bus import connect_redis
from shared.schemas import OrderIntent, encode, streams
from shared.storage import Database
from tests.executor.fake_venue.harness import fake_venue
from tests.executor.test_ccxt_executor import VENUE, final_event, live_executor, live_settings, venue_book, wait_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("margin_mode", [None, "cross"])
async def test_an_order_whose_intent_was_never_stored_is_followed_after_a_crash(
    isolated: tuple[str, str], monkeypatch: pytest.MonkeyPatch, margin_mode: str | None
) -> None:
    """A margin order is asked of the venue's margin side: its spot side says "does not exist", which after the
    receive window meant "never placed", and the order was sent a second time."""
    async with fake_venue(**VENUE) as (fake, cfg):
        settings = live_settings(cfg)
        bid = Decimal(fake.book["BTCUSDT"]["bids"][0][0])
        rest = OrderIntent(
            "lost",
            "binance",
            "BTC/USDT",
            "buy",
            "limit",
            0.01,
            time.time_ns(),
            price=float(bid),
            strategy="probe",
            margin_mode=margin_mode,
        )
        crash = asyncio.Event()

        async def save_orders_stuck(self: ExecutorStore, intents: Any) -> None:
            await crash.wait()
            raise asyncio.CancelledError  # the process dies before the intent is stored

        dsn, rurl = isolated
        redis, db = connect_redis(rurl), await Database.connect(dsn, settings.storage)
        await db.migrate()
        gateway = build_gateway(settings, "t")
        with monkeypatch.context() as patch:
            patch.setattr(ExecutorStore, "save_orders", save_orders_stuck)
            executor = Executor(settings, redis, db, gateway, run_id="t")
            run = asyncio.create_task(executor.run())
            await asyncio.wait_for(executor.ready.wait(), 30)
            await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(venue_book(fake.book["BTCUSDT"]))})
            await wait_for(lambda: ("binance", "BTC/USDT") in executor.guard.mids, "the executor's first book")
            await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(rest)})
            made_by_report = "SELECT 1 FROM orders WHERE client_order_id = 'lost' AND status = 'accepted'"
            await wait_for(lambda: db.fetch(made_by_report), "the order's row, made by the venue's report")
            run.cancel()  # the crash: the intent is claimed and pending, its row holds no intent
            crash.set()
            with contextlib.suppress(asyncio.CancelledError):
                await run
        await gateway.close()
        await db.close()
        await redis.aclose()
        assert [o["status"] for o in fake.orders_by_client_id("lost")] == ["NEW"]

        async with live_executor(isolated, settings) as (executor, redis, db):
            group = settings.executor.group

            async def intent_handled() -> bool:
                return (await redis.xpending(streams.ORDERS_INTENTS, group))["pending"] == 0

            await wait_for(intent_handled, "the crashed run's intent handled by the next run")
            await fake.fill_resting("lost")
            filled = await wait_for(lambda: final_event(redis, "lost"), "the fill of the order, recorded")
            (row,) = await db.fetch("SELECT status, strategy, intent FROM orders WHERE client_order_id = 'lost'")
            fills = await db.fetch("SELECT amount FROM fills WHERE client_order_id = 'lost'")
    assert (filled.status, filled.filled) == ("filled", pytest.approx(0.01))
    assert (row["status"], row["strategy"], row["intent"]) == ("filled", "probe", encode(rest))
    assert [f["amount"] for f in fills] == [Decimal("0.01")]
    assert [o["status"] for o in fake.orders_by_client_id("lost")] == ["FILLED"]  # placed once, never resent
