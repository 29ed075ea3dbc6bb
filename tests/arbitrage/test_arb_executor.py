"""The cycle strategy inside the executor, on real Redis and PostgreSQL: books in, legs through the
ordinary order path, the execution and the ledger stored."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from services.executor.gateway import PaperGateway
from services.executor.service import Executor
from shared.bus import connect_redis
from shared.config import Settings
from shared.paper import PaperExchange
from shared.schemas import BookUpdate, encode, streams
from shared.storage import Database

BOOKS = {  # the triangle of test_arb_execution: ≈ +0.66% after three 0.1% taker fees
    "BTC/USDT": ([(60_000.0, 2.0)], [(60_010.0, 2.0)]),
    "ETH/BTC": ([(0.04999, 40.0)], [(0.05001, 40.0)]),
    "ETH/USDT": ([(3_030.0, 40.0)], [(3_031.0, 40.0)]),
}


@pytest.fixture
async def dsn(database_url: str, uid: str) -> AsyncIterator[str]:
    name = f"tw_arb_{uid}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    parts = urlsplit(database_url)
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


@pytest.mark.integration
async def test_executor_runs_a_profitable_cycle_and_stores_it(dsn: str, redis_url: str) -> None:
    parts = urlsplit(redis_url)
    redis = connect_redis(urlunsplit((parts.scheme, parts.netloc, "/10", parts.query, parts.fragment)))
    await redis.flushdb()
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    settings = Settings(
        mode="replay",
        bus={"block_ms": 20, "claim_idle_ms": 1000, "claim_interval_ms": 200},
        executor={
            "strategy_enabled": False,
            "market_data_venues": ["binance"],
            "initial_balances": {"binance": {"USDT": 2_000.0}},
        },
        arbitrage={"max_len": 3, "start_assets": ["USDT"], "max_start_amount": {"USDT": 500.0}, "venues": ["binance"]},
    )
    exchange = PaperExchange(settings.executor.venues, seed=1, id_prefix="A-")
    executor = Executor(settings, redis, db, PaperGateway(exchange), run_id="arb")
    task = asyncio.create_task(executor.run())
    try:
        await asyncio.wait_for(executor.ready.wait(), 20)
        for seq, (symbol, (bids, asks)) in enumerate(BOOKS.items(), 1):
            now = time.time_ns()
            update = BookUpdate("binance", symbol, seq, now, now, bids, asks, snapshot=True)  # type: ignore[arg-type]
            await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(update)})
        deadline = time.monotonic() + 20
        rows: list[asyncpg.Record] = []
        while not rows and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            rows = await db.fetch("SELECT * FROM arb_executions")
        [row] = rows
        assert row["status"] == "completed" and row["mode"] == "sequential"
        assert row["latency_us"] > 0 and row["realized_profit"] > 0
        [opportunity] = await db.fetch("SELECT * FROM arb_opportunities")
        assert opportunity["decision"] == "fired" and opportunity["execution_id"] == row["execution_id"]
        orders = await db.fetch(
            "SELECT client_order_id, status, strategy FROM orders WHERE strategy = 'arb' ORDER BY client_order_id"
        )
        assert [(o["status"], o["strategy"]) for o in orders] == [("filled", "arb")] * 3
        # the stored ledger's USDT change is the execution's realized USDT gain
        usdt = await db.fetch("SELECT sum(delta) AS s FROM ledger WHERE asset = 'USDT' AND kind <> 'deposit'")
        assert usdt[0]["s"] > 0
        mids = {"BTC": 60_005.0, "ETH": 3_030.5}  # what the strategy marks leftover dust at
        residual = sum(x * mids[a] for a, x in json.loads(row["residuals"]).items())
        assert float(usdt[0]["s"]) == pytest.approx(row["realized_profit"] - residual, abs=1e-6)
        assert Decimal(str(exchange.accounts.wallet("binance").get("USDT").free)) > Decimal(2_000)
    finally:
        executor.stop()
        await asyncio.wait_for(task, 20)
        await redis.flushdb()
        await redis.aclose()
        await db.close()
