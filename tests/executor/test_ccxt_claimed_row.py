"""An executor killed between the venue's answer and storing the order's intent: the venue's report may have made the
order's row first (no intent in it). The next run takes the intent over; it must follow that order from what the row
holds — never send it again, never count a fill twice, never miss one (chaos runs lost a fill this way: the row said
`accepted` for good)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from services.executor.gateways import build_gateway
from services.executor.service import Executor
from services.executor.store import ExecutorStore
from shared.bus import connect_redis
from shared.config import Settings
from shared.schemas import OrderIntent, encode, streams
from shared.storage import Database
from tests.executor.fake_venue.core import FakeBinance
from tests.executor.fake_venue.harness import fake_venue
from tests.executor.test_ccxt_executor import VENUE, final_event, live_executor, live_settings, venue_book, wait_for

pytestmark = pytest.mark.integration


async def crash_after_the_report(
    fake: FakeBinance, settings: Settings, isolated: tuple[str, str], intent: OrderIntent, status: str
) -> None:
    """Run an executor that sends ``intent`` and dies once the venue's report made its row (``status``), before the
    row got the intent: the intent stays claimed and pending on ``orders:intents``."""
    crash = asyncio.Event()

    async def save_orders_stuck(self: ExecutorStore, intents: Any) -> None:
        await crash.wait()
        raise asyncio.CancelledError  # the process dies before the intent is stored

    dsn, rurl = isolated
    redis, db = connect_redis(rurl), await Database.connect(dsn, settings.storage)
    await db.migrate()
    gateway = build_gateway(settings, "t")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ExecutorStore, "save_orders", save_orders_stuck)
        executor = Executor(settings, redis, db, gateway, run_id="t")
        run = asyncio.create_task(executor.run())
        await asyncio.wait_for(executor.ready.wait(), 30)
        await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(venue_book(fake.book["BTCUSDT"]))})
        await wait_for(lambda: ("binance", "BTC/USDT") in executor.guard.mids, "the executor's first book")
        await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(intent)})
        made = f"SELECT 1 FROM orders WHERE client_order_id = '{intent.client_order_id}' AND status = '{status}'"
        await wait_for(lambda: db.fetch(made), "the order's row, made by the venue's report")
        run.cancel()
        crash.set()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    await gateway.close()
    await db.close()
    await redis.aclose()
    assert await db_value(dsn, "SELECT count(*) FROM orders WHERE intent IS NOT NULL") == 0


async def db_value(dsn: str, query: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def intent_taken_over(redis: Any, settings: Settings) -> bool:
    return (await redis.xpending(streams.ORDERS_INTENTS, settings.executor.group))["pending"] == 0


@pytest.mark.parametrize("margin_mode", [None, "cross"])
async def test_an_open_order_whose_intent_was_never_stored_is_followed_after_a_crash(
    isolated: tuple[str, str], margin_mode: str | None
) -> None:
    """The cross-margin case: its order was asked of the venue's spot side, which said "does not exist"; after the
    receive window that meant "never placed", and the order was sent a second time."""
    async with fake_venue(**VENUE, rest_check_s=0.2) as (fake, cfg):  # the fake streams spot reports only
        settings = live_settings(cfg)
        bid = float(fake.book["BTCUSDT"]["bids"][0][0])
        rest = OrderIntent(
            "lost", "binance", "BTC/USDT", "buy", "limit", 0.01, time.time_ns(), price=bid, strategy="probe",
            margin_mode=margin_mode,
        )  # fmt: skip
        await crash_after_the_report(fake, settings, isolated, rest, "accepted")
        assert [o["status"] for o in fake.orders_by_client_id("lost")] == ["NEW"]

        async with live_executor(isolated, settings) as (_, redis, db):
            await wait_for(lambda: intent_taken_over(redis, settings), "the crashed run's intent taken over")
            await fake.fill_resting("lost")
            filled = await wait_for(lambda: final_event(redis, "lost"), "the fill of the order, recorded")
            (row,) = await db.fetch("SELECT status, strategy, intent FROM orders WHERE client_order_id = 'lost'")
            fills = await db.fetch("SELECT amount FROM fills WHERE client_order_id = 'lost'")
    assert (filled.status, filled.filled) == ("filled", pytest.approx(0.01))
    assert (row["status"], row["strategy"], row["intent"]) == ("filled", "probe", encode(rest))
    assert [f["amount"] for f in fills] == [Decimal("0.01")]
    assert [o["status"] for o in fake.orders_by_client_id("lost")] == ["FILLED"]  # placed once, never resent


async def test_a_fill_stored_before_the_crash_is_not_counted_again(isolated: tuple[str, str]) -> None:
    """A market order filled at once: its report stored the fill and made the row before the crash. Asking the
    venue again would book the fill a second time (new ledger refs)."""
    async with fake_venue(**VENUE) as (fake, cfg):
        settings = live_settings(cfg)
        buy = OrderIntent("done", "binance", "BTC/USDT", "buy", "market", 0.01, time.time_ns(), strategy="probe")
        await crash_after_the_report(fake, settings, isolated, buy, "filled")
        dsn = isolated[0]
        ledger = "SELECT sum(delta) FROM ledger WHERE asset = 'BTC'"
        before = await db_value(dsn, ledger)

        async with live_executor(isolated, settings) as (_, redis, db):
            await wait_for(lambda: intent_taken_over(redis, settings), "the crashed run's intent taken over")
            stored = "SELECT 1 FROM orders WHERE client_order_id = 'done' AND intent IS NOT NULL"
            await wait_for(lambda: db.fetch(stored), "the intent stored with the order")
        # the executor has stopped: every report it had is stored
        assert before == Decimal("0.01") and await db_value(dsn, ledger) == before
        assert await db_value(dsn, "SELECT count(*) FROM fills WHERE client_order_id = 'done'") == 1
        assert await db_value(dsn, "SELECT status FROM orders WHERE client_order_id = 'done'") == "filled"
    assert len(fake.orders_by_client_id("done")) == 1
