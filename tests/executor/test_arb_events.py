"""`arb:events` carries the cycle strategy's opportunities and executions too (real Redis and PostgreSQL,
the executor hosting the cycle strategy on made-up books of one profitable triangle)."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.executor.gateway import PaperGateway
from services.executor.service import Executor
from shared.bus import connect_redis
from shared.config import Settings
from shared.paper import PaperExchange
from shared.schemas import ArbEvent, BookUpdate, decode, encode, streams
from shared.storage import Database

BOOKS = {  # ≈ +0.66% after three 0.1% taker fees (tests/arbitrage/test_arb_executor.py)
    "BTC/USDT": ([(60_000.0, 2.0)], [(60_010.0, 2.0)]),
    "ETH/BTC": ([(0.04999, 40.0)], [(0.05001, 40.0)]),
    "ETH/USDT": ([(3_030.0, 40.0)], [(3_031.0, 40.0)]),
}


async def arb_events(redis: object) -> list[ArbEvent]:
    entries = await redis.xrange(streams.ARB_EVENTS)  # type: ignore[attr-defined]
    return [m for _, e in entries for m in decode(e[streams.FIELD.encode()]) if isinstance(m, ArbEvent)]


@pytest.mark.integration
async def test_the_cycle_strategy_puts_its_opportunity_and_execution_on_arb_events(isolated: tuple[str, str]):
    dsn, redis_url = isolated
    redis = connect_redis(redis_url)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    settings = Settings(
        mode="replay",
        bus={"block_ms": 20, "claim_idle_ms": 1000, "claim_interval_ms": 200},
        executor={"strategy_enabled": False, "rl_enabled": False, "market_data_venues": ["binance"],
                  "initial_balances": {"binance": {"USDT": 2_000.0}}},
        arbitrage={"max_len": 3, "start_assets": ["USDT"], "max_start_amount": {"USDT": 500.0}, "venues": ["binance"]},
    )  # fmt: skip
    executor = Executor(settings, redis, db, PaperGateway(PaperExchange(settings.executor.venues, seed=1)), run_id="ev")
    task = asyncio.create_task(executor.run())
    try:
        await asyncio.wait_for(executor.ready.wait(), 20)
        for seq, (symbol, (bids, asks)) in enumerate(BOOKS.items(), 1):
            now = time.time_ns()
            update = BookUpdate("binance", symbol, seq, now, now, bids, asks, snapshot=True)  # type: ignore[arg-type]
            await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(update)})
        deadline = time.monotonic() + 20
        events: list[ArbEvent] = []
        while not any(e.kind == "execution" for e in events) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            events = await arb_events(redis)
        [execution] = [e for e in events if e.kind == "execution"]
        [stored] = await db.fetch("SELECT * FROM arb_executions")
        assert (execution.strategy, execution.exchange, execution.decision) == ("arb", "binance", "completed")
        assert execution.execution_id == stored["execution_id"] and stored["strategy"] == "arb"
        assert execution.realized_profit == pytest.approx(stored["realized_profit"])
        fired = [e for e in events if e.kind == "opportunity" and e.decision == "fired"]
        assert [e.execution_id for e in fired] == [execution.execution_id]
        assert fired[0].assets == ["USDT", *fired[0].assets[1:-1], "USDT"] and len(fired[0].assets) == 4
    finally:
        executor.stop()
        await asyncio.wait_for(task, 20)
        await redis.aclose()
        await db.close()
