"""Executor figures: paper exchange throughput and tick-to-order latency through Redis.

- ``paper_book_updates_per_s``: recorded Binance BTC/USDT depth diffs applied to the paper exchange
  while 100 limit orders rest on the book (each update re-queues the orders at changed levels);
  ``paper_book_updates_per_s_no_orders`` is the same without orders.
- ``tick_to_order_p50_us`` / ``_p99_us``: a normalized book update is published to ``md:book:binance``
  (stamped with the time it is handed to Redis, standing in for ingest's receive time) → the executor's
  market-data consumer → baseline strategy → intent on ``orders:intents`` → intents consumer → claim in
  PostgreSQL + pre-trade checks (``shared.pretrade``) → accepted by the paper gateway. Two Redis hops and one PostgreSQL
  round trip, all on loopback, publisher and executor in one process.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.paper import PaperExchange
from shared.paper.recorded import read_binance_capture
from shared.schemas import BookUpdate, OrderIntent, encode, streams
from shared.sections.executor import default_venues

CAPTURE = Path(__file__).resolve().parent.parent / "tests" / "data" / "executor" / "binance_btcusdt_20240809_20s.gz"


def _paper_rate(books: list[BookUpdate], n_orders: int, seconds: float = 2.0) -> float:
    ex = PaperExchange(default_venues(), seed=1)
    ex.deposit("binance", "USDT", 10**9, 0)
    ex.deposit("binance", "BTC", 10**5, 0)
    snapshot, deltas = books[0], books[1:]
    ex.on_book(snapshot)
    now = snapshot.recv_ts
    bids = sorted(p for p, _ in snapshot.bids)[::-1][:50]
    asks = sorted(p for p, _ in snapshot.asks)[:50]
    for i in range(n_orders):
        side, price = ("buy", bids[i // 2]) if i % 2 == 0 else ("sell", asks[i // 2])
        ex.submit(OrderIntent(f"r{i}", "binance", "BTC/USDT", side, "limit", 0.001, now, price=price), now)  # type: ignore[arg-type]
    now += 10**9
    ex.advance(now)
    assert len(ex.open_orders()) == n_orders, "the resting orders must all be on the book"
    applied = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for d in deltas:
            now += 1_000_000
            ex.on_book(BookUpdate(d.exchange, d.symbol, d.seq, now, now, d.bids, d.asks))
        applied += len(deltas)
    return applied / (time.perf_counter() - started)


async def _tick_to_order(redis_url: str, database_url: str, n_ticks: int = 600) -> list[int]:
    from services.executor.gateway import PaperGateway
    from services.executor.service import Executor
    from shared.bus import connect_redis
    from shared.config import Settings
    from shared.storage import Database

    name = f"tw_bench_exec_{time.time_ns() % 10**9}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    parts = urlsplit(database_url)
    dsn = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    rparts = urlsplit(redis_url)
    rurl = urlunsplit((rparts.scheme, rparts.netloc, "/8", rparts.query, rparts.fragment))
    redis = connect_redis(rurl)
    await redis.flushdb()
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    settings = Settings(
        mode="replay",
        bus={"block_ms": 100, "claim_idle_ms": 30_000},
        executor={
            "strategy_enabled": True,
            "strategy_lookback": 2,
            "strategy_threshold_bps": 0.0,
            "strategy_cooldown_s": 0.0,
            "strategy_notional": 20.0,
            "market_data_venues": ["binance"],
        },
        # every tick is a signal (~200 orders/s): the figure is the path's latency, not the order-rate limit
        risk={"limits": {"orders_per_s": 100_000.0, "order_burst": 1_000}},
    )
    ex = settings.executor
    gateway = PaperGateway(PaperExchange(ex.venues, seed=1, id_prefix="B-"))
    executor = Executor(settings, redis, db, gateway, run_id="bench")
    task = asyncio.create_task(executor.run())
    await asyncio.wait_for(executor.ready.wait(), 30)
    books = [m for m in read_binance_capture(CAPTURE) if isinstance(m, BookUpdate)]
    bid, ask = books[0].bids[0][0], books[0].asks[0][0]
    publisher = connect_redis(rurl)
    try:
        for i in range(n_ticks):  # the touch moves up and down by one tick: every update is a signal
            shift = 0.01 if i % 2 else -0.01
            now = time.time_ns()
            update = BookUpdate(
                "binance", "BTC/USDT", i + 1, now, now, [(bid + shift, 1.0)], [(ask + shift, 1.0)], snapshot=True
            )
            await publisher.xadd(streams.md_book("binance"), {streams.FIELD: encode(update)}, maxlen=100_000)
            await asyncio.sleep(0.005)  # ~200 ticks/s, each handled before the next
        deadline = time.monotonic() + 10
        while len(executor.submit_latency_ns) < n_ticks * 0.9 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return list(executor.submit_latency_ns)
    finally:
        executor.stop()
        await task
        await publisher.aclose()
        await redis.flushdb()
        await redis.aclose()
        await db.close()
        admin = await asyncpg.connect(database_url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def run(ctx: object) -> dict[str, float | int | str]:
    books = [m for m in read_binance_capture(CAPTURE) if isinstance(m, BookUpdate)]
    figures: dict[str, float | int | str] = {
        "paper_book_updates_per_s": round(_paper_rate(books, 100)),
        "paper_book_updates_per_s_no_orders": round(_paper_rate(books, 0)),
    }
    samples = asyncio.run(_tick_to_order(ctx.redis_url, ctx.database_url))  # type: ignore[attr-defined]
    samples.sort()
    figures["tick_to_order_samples"] = len(samples)
    if samples:
        figures["tick_to_order_p50_us"] = round(statistics.median(samples) / 1000, 1)
        figures["tick_to_order_p99_us"] = round(samples[int(len(samples) * 0.99) - 1] / 1000, 1)
    figures["tick_to_order_path"] = "md:book publish -> strategy -> orders:intents -> claim+checks -> paper gateway"
    return figures
