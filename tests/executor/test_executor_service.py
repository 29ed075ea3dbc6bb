"""The executor in-process on real Redis and PostgreSQL: checks, halts, duplicates, status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from services.executor.cli import collect
from services.executor.gateway import PaperGateway
from services.executor.service import Executor
from services.executor.strategies.momentum import MomentumStrategy
from shared.bus import connect_redis
from shared.config import Settings
from shared.paper import PaperExchange
from shared.paper.recorded import read_binance_capture
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, RiskControl, decode, encode, streams
from shared.sections.executor import ExecutorSettings
from shared.storage import Database
from tests.control import KEYS, xadd

CAPTURE = Path(__file__).parent.parent / "data" / "executor" / "binance_btcusdt_20240809_20s.gz"


async def events_on_stream(redis, n: int, timeout: float = 15.0) -> list[OrderEvent]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        events: list[OrderEvent] = []
        for _, fields in await redis.xrange(streams.ORDERS_EVENTS):
            events += [m for m in decode(fields[streams.FIELD.encode()]) if isinstance(m, OrderEvent)]
        if len(events) >= n or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.05)


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.integration
async def test_checks_halt_duplicates_and_status(isolated: tuple[str, str]) -> None:
    dsn, rurl = isolated
    redis = connect_redis(rurl)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    settings = Settings(
        mode="replay",
        bus={"block_ms": 50, "claim_idle_ms": 1000, "claim_interval_ms": 200},
        executor={"strategy_enabled": False, "market_data_venues": ["binance"]},
        risk={"limits": {"max_order_notional": 1000.0}},
        control=KEYS,
    )
    exchange = PaperExchange(settings.executor.venues, seed=1, id_prefix="T-")
    executor = Executor(settings, redis, db, PaperGateway(exchange), run_id="svc")
    task = asyncio.create_task(executor.run())
    try:
        await asyncio.wait_for(executor.ready.wait(), 20)
        snap = next(m for m in read_binance_capture(CAPTURE) if isinstance(m, BookUpdate))
        await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(snap)})
        deadline = time.monotonic() + 20
        while exchange.book("binance", "BTC/USDT").mid() is None:
            assert time.monotonic() < deadline, "the executor never applied the book snapshot"
            await asyncio.sleep(0.01)

        def intent(cid: str, amount: float) -> OrderIntent:
            return OrderIntent(cid, "binance", "BTC/USDT", "buy", "market", amount, time.time_ns())

        small, big = intent("ok-1", 0.01), intent("big-1", 0.1)  # 0.1 BTC ≈ 6,200 USDT > 1,000
        for i in (small, small, big):  # the first intent twice
            await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(i)})
        first = await events_on_stream(redis, 3)
        assert sorted((e.client_order_id, e.status, e.reason) for e in first) == [
            ("big-1", "rejected", "risk.max_notional"),
            ("ok-1", "accepted", ""),
            ("ok-1", "filled", ""),
        ]

        await xadd(redis, RiskControl("halt", time.time_ns()))
        await until(lambda: bool(executor.guard.halted))
        await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(intent("halted-1", 0.01))})
        halted = await events_on_stream(redis, 4)
        assert ("halted-1", "rejected", "risk.halted") in [(e.client_order_id, e.status, e.reason) for e in halted]
        await xadd(redis, RiskControl("resume", time.time_ns()))
        await until(lambda: not executor.guard.halted)
        await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(intent("ok-2", 0.015))})
        resumed = await events_on_stream(redis, 6)
        assert ("ok-2", "filled") in [(e.client_order_id, e.status) for e in resumed]
        await until(lambda: not executor._unstored)  # every report stored before the stop
    finally:
        executor.stop()
        await task

    status = await collect(dsn)
    assert status["orders"] == 4 and status["fills"] >= 2
    assert status["orders_by_status"] == {"filled": 2, "rejected": 2}
    assert status["fills_by_strategy"] == {"(none)": status["fills"]}  # the test's intents name no strategy
    filled = [e for e in resumed if e.status == "filled"]
    bought = sum(Decimal(repr(f.amount)) - Decimal(repr(f.fee)) for e in filled for f in e.fills)
    spent = sum(Decimal(repr(f.amount)) * Decimal(repr(f.price)) for e in filled for f in e.fills)
    initial = settings.executor.initial_balances["binance"]
    balances = {(b["asset"]): b for b in status["balances"] if b["exchange"] == "binance"}
    assert Decimal(balances["BTC"]["free"]) == Decimal(repr(initial["BTC"])) + bought
    assert Decimal(balances["USDT"]["free"]) == Decimal(repr(initial["USDT"])) - spent
    (pos,) = [p for p in status["positions"] if p["exchange"] == "binance"]
    assert Decimal(pos["amount"]) == Decimal("0.025")
    assert status["risk"]["halted"] is False and status["policy"] is None
    await db.close()
    await redis.aclose()


def test_momentum_follows_the_move_and_sells_only_what_it_bought() -> None:
    strategy = MomentumStrategy(
        ExecutorSettings(strategy_lookback=3, strategy_threshold_bps=5, strategy_cooldown_s=0, strategy_notional=100),
        run_id="t",
    )
    out = []
    for t, mid in enumerate([100.0, 100.01, 100.02, 100.2, 100.3, 100.4, 100.0, 99.9, 99.8, 99.5, 99.4, 99.3]):
        i = strategy.on_mid("binance", "X/USDT", mid, t)
        if i:
            out.append((i.side, i.amount))
    # the first mids move < 5 bps; 100.2 is +18 bps over 100.0: buy 100 quote worth at 100.2
    assert out[0] == ("buy", float(f"{100 / 100.2:.6g}"))
    sells = [a for s, a in out if s == "sell"]
    assert sells and sum(sells) <= sum(a for s, a in out if s == "buy")
