"""The cross-venue strategy's executions when a leg report never comes, and across a restart: resolved
from the executor's records of the gateway's reports and from the gateway, then unwound, never forgotten.

Books are made up (two venues, one BTC/USDT price 0.5% apart); real PostgreSQL holds the records."""

from __future__ import annotations

from typing import Any

import pytest

from services.executor.arbitrage.cross import CrossVenueArbitrage
from services.executor.arbitrage.records import ArbitrageStore
from services.executor.store import ExecutorStore
from services.executor.strategies.arbitrage_cross import CrossArbitrage
from services.executor.strategies.base import StrategyContext
from shared.config import Settings
from shared.paper.book import SimBook
from shared.schemas import BookUpdate, Fill, OrderEvent, OrderIntent
from shared.storage import Database

FREE = {("a", "USDT"): 10_000.0, ("a", "BTC"): 0.1, ("b", "USDT"): 10_000.0, ("b", "BTC"): 0.1}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        return self.now


def strategy(db: Database, clock: Clock, knows: dict[str, bool]) -> CrossArbitrage:
    settings = Settings(mode="replay", arbitrage={"cross_max_amount": {"BTC": 0.01}, "cross_leg_timeout_s": 5.0})

    async def venue_knows(cid: str, venue: str, symbol: str) -> bool | None:
        return knows.get(cid)

    ctx = StrategyContext(settings, "r1", ExecutorStore(db), lambda v, a: FREE.get((v, a), 0.0), knows=venue_knows)
    engine = CrossVenueArbitrage({"a": 0.001, "b": 0.001}, {}, max_amounts=settings.arbitrage.cross_max_amount)
    return CrossArbitrage(ctx, ["a", "b"], engine, ArbitrageStore(db), clock=clock)


def books(s: CrossArbitrage, now: int) -> list[OrderIntent]:
    intents = []
    for venue, mid in (("a", 60_000.0), ("b", 60_300.0)):
        update = BookUpdate(venue, "BTC/USDT", 1, now, now, [(mid - 1, 1.0)], [(mid + 1, 1.0)], snapshot=True)
        book = SimBook()
        book.apply(update)
        intents += s.on_book(update, book)
    return intents


def filled(intent: OrderIntent, price: float, fill_id: str) -> OrderEvent:
    fill = Fill(fill_id, price, intent.amount, intent.amount * price * 0.001, "USDT", 0)
    return OrderEvent(intent.client_order_id, intent.exchange, intent.symbol, intent.side, "filled", 0,
                      filled=intent.amount, avg_price=price, fills=[fill])  # fmt: skip


async def rows(db: Database, sql: str, *args: Any) -> list[Any]:
    return list(await db.fetch(sql, *args))


@pytest.mark.integration
async def test_a_lost_leg_report_is_looked_up_after_the_deadline_and_unwound(db: Database, uid: str):
    clock, knows = Clock(), {}
    s = strategy(db, clock, knows)
    s.ctx = StrategyContext(s.ctx.settings, f"lost{uid}", s.ctx.store, s.ctx.free_balance, knows=s.ctx.knows)
    buy, sell = books(s, clock.now)
    assert (buy.exchange, buy.side, sell.exchange, sell.side) == ("a", "buy", "b", "sell")
    await s.flush()
    assert s.on_order_event(filled(buy, 60_001.0, f"f-{uid}")) == []  # the sell leg's report never comes
    await s.flush()
    assert s.execution is not None  # not before the deadline
    knows[sell.client_order_id] = False  # the gateway never received it
    clock.now += 6 * 10**9
    await s.flush()
    [unwind] = books(s, clock.now)  # the unwind goes out with the next hook
    assert (unwind.exchange, unwind.side, unwind.order_type, unwind.amount) == ("a", "sell", "market", buy.amount)
    s.on_order_event(filled(unwind, 59_999.0, f"u-{uid}"))
    await s.flush()
    [row] = await rows(db, "SELECT * FROM arb_executions WHERE execution_id = $1", buy.client_order_id[:-4])
    assert row["status"] == "unwound" and row["strategy"] == "xarb"
    expected = buy.amount * (59_999.0 - 60_001.0) - buy.amount * (59_999.0 + 60_001.0) * 0.001
    assert row["realized_profit"] == pytest.approx(expected)
    assert await rows(db, "SELECT 1 FROM arb_inflight WHERE execution_id = $1", row["execution_id"]) == []


@pytest.mark.integration
async def test_an_execution_in_flight_survives_a_restart(db: Database, uid: str):
    clock, knows = Clock(), {}
    first = strategy(db, clock, knows)
    first.ctx = StrategyContext(first.ctx.settings, f"rs{uid}", first.ctx.store, first.ctx.free_balance,
                                knows=first.ctx.knows)  # fmt: skip
    buy, sell = books(first, clock.now)
    await first.flush()  # the execution is kept in arb_inflight; then the process dies
    assert await rows(db, "SELECT state FROM arb_inflight WHERE execution_id = $1", buy.client_order_id[:-4])
    # meanwhile the executor stored the buy leg's report from the gateway; the sell never reached venue b
    store = ExecutorStore(db)
    await store.save_orders([buy])
    await store.record([(filled(buy, 60_001.0, f"f-{uid}"), 0)], [], [], [])
    knows[sell.client_order_id] = False

    second = strategy(db, clock, knows)
    assert await second.start() == []
    assert second.execution is not None and second.execution.execution_id == buy.client_order_id[:-4]
    await second.flush()  # looked up at once
    [unwind] = books(second, clock.now)
    assert (unwind.exchange, unwind.side, unwind.amount) == ("a", "sell", buy.amount)
    second.on_order_event(filled(unwind, 59_999.0, f"u-{uid}"))
    await second.flush()
    [row] = await rows(db, "SELECT status FROM arb_executions WHERE execution_id = $1", buy.client_order_id[:-4])
    assert row["status"] == "unwound"
    assert await rows(db, "SELECT 1 FROM arb_inflight WHERE execution_id = $1", buy.client_order_id[:-4]) == []
