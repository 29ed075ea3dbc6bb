"""Executor figures: paper exchange throughput and tick-to-order latency through Redis.

- ``paper_book_updates_per_s``: recorded Binance BTC/USDT depth diffs applied to the paper exchange
  while 100 limit orders rest on the book (each update re-queues the orders at changed levels);
  ``paper_book_updates_per_s_no_orders`` is the same without orders.
- ``tick_to_order_p50_us`` / ``_p99_us``: from a recorded raw Binance depth frame's arrival at ingest's
  Binance feed (the clock read handed to ``on_frame``: JSON parse, local book and normalization
  included) → ``shared.publisher.Publisher`` → ``md:book:binance`` → the executor's market-data
  consumer → the momentum strategy (lookback 2, no threshold, no cool-down, holding the paper venue's
  BTC from the start: every other update is an order, a buy on a rising mid, else a sell) → the
  one-hop order path (``services.executor.order_path``: the intent journaled to ``orders:intents`` and
  its client order id claimed with SET NX in one MULTI round trip, then the pre-trade guard) → handed
  to the paper gateway (the clock is read when its ``submit`` returns; the simulated venue's latency
  draws are not in the figure). One stream hop and one Redis round trip, on loopback, ingest feed and
  executor in one process and one event loop; the order row reaches PostgreSQL after the accept,
  outside the timing.
- ``tick_to_order_two_hop_p50_us`` / ``_p99_us``: the same frames and executor with the strategy's
  intents published on ``orders:intents`` first and executed by the intents consumer (the path before
  the one-hop order path; the executor still takes it before its start-up reconcile is done).
- ``tick_to_order_floor_p50_us`` / ``_p99_us``: the floor measured in the same run: a message put on the
  same Publisher, read by a ``shared.bus.Consumer`` and followed by one Redis round trip (SET NX), nothing
  else.
- ``tick_to_order_p50_us_markets_N`` / ``_p99_us_markets_N`` (N in MARKETS): the one-hop path while the
  executor follows N markets: before each measured frame, the N - 1 others each get a book update (the
  capture's own diffs re-labelled ``M001/BTC`` ..., so every market ticks at once and the measured one
  last, N x ~200 updates/s). They are quoted in BTC, which the momentum baseline does not trade: their
  cost is the executor's book keeping, the paper venue's book, the guard's mid and the strategy's call,
  not orders. N = 1 is the headline path's samples.

The paths run in alternating blocks of BLOCK frames (one-hop, two-hop, then each N), then the floor's
20 messages, ROUNDS times (none starting past ROUNDS_WITHIN_S), so machine load falls on all alike;
``*_samples`` counts each figure's samples (an order is timed only when a frame's update fires the
strategy and the guard passes it).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from redis.asyncio import Redis

from shared.momentum import Momentum
from shared.paper import PaperExchange
from shared.paper.recorded import read_binance_capture
from shared.publisher import Publisher
from shared.schemas import BookUpdate, OrderIntent, streams
from shared.sections.executor import default_venues

MARKETS = (1, 10, 100)
ROUNDS = 16  # blocks of each path, alternating: ~320 orders each, 2,560 of the capture's 6,495 depth frames
BLOCK = 40
ROUNDS_WITHIN_S = 60.0  # no round starts after this (a loaded machine gets fewer samples, counted)
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


def _relabel(update: BookUpdate, market: int, now: int) -> BookUpdate:
    """A capture's update as market ``market``'s (quoted in BTC: the momentum baseline does not trade it)."""
    return BookUpdate(
        "binance", f"M{market:03d}/BTC", update.seq, now, now, update.bids, update.asks, snapshot=update.snapshot
    )


async def _tick_to_order(
    redis_url: str, database_url: str, others: list[BookUpdate], rounds: int = ROUNDS
) -> dict[str, list[int]]:
    from bench.bench_ingest import load_frames
    from services.executor.gateway import PaperGateway
    from services.executor.service import Executor
    from services.ingest.feed import BusSink
    from services.ingest.venues import get
    from shared.bus import Consumer, Delivery, RedisBus, connect_redis
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
        # every other update is a signal (~100 orders/s): the figure is the path's latency, not the order-rate limit
        risk={"limits": {"orders_per_s": 100_000.0, "order_burst": 1_000}},
    )
    gateway = PaperGateway(PaperExchange(settings.executor.venues, seed=1, id_prefix="B-"))
    executor = Executor(settings, redis, db, gateway, run_id="bench")
    task = asyncio.create_task(executor.run())
    await asyncio.wait_for(executor.ready.wait(), 30)
    # the baseline only sells what it bought: holding the paper venue's BTC from the start, a flat or
    # falling mid is a sell as a rising one is a buy, so every other update is an order
    momentum = executor.strategies.by_name["momentum"]
    assert isinstance(momentum, Momentum)
    momentum.held[("binance", "BTC/USDT")] = settings.executor.initial_balances["binance"]["BTC"]
    frames, _, _ = load_frames()
    start = next(i for i, f in enumerate(frames) if f.startswith('{"lastUpdateId"'))
    buffered = next(i for i in range(start - 1, -1, -1) if "@depth@" in frames[i][:40])
    depth = [frames[buffered], frames[start]] + [f for f in frames[start + 1 :] if "@depth@" in f[:40]]
    publisher = Publisher(RedisBus(connect_redis(rurl), settings.bus))
    writer = publisher.start()
    venue = get("binance")
    feed = venue.feed(venue.shipped_markets(), BusSink(publisher, "binance"))
    floor: list[int] = []

    async def one_round_trip(deliveries: list[Delivery]) -> None:
        await redis.set("bench:floor:claim", b"1", nx=True, ex=60)
        now = time.time_ns()
        floor.extend(now - m.recv_ts for d in deliveries for m in d.messages if isinstance(m, BookUpdate))

    floor_consumer = Consumer(redis, ["bench:floor"], "bench-floor", one_round_trip, settings.bus, start_id="$")
    floor_task = asyncio.create_task(floor_consumer.run())
    await floor_consumer.ready.wait()
    samples: dict[str, list[int]] = {"one_hop": [], "two_hop": [], "floor": floor}
    samples.update({f"markets_{n}": [] for n in MARKETS if n > 1})
    book_stream = streams.md_book("binance")
    for j in range(1, max(MARKETS)):  # the other markets' books, from the capture's snapshot
        publisher.put_nowait(book_stream, _relabel(others[0], j, time.time_ns()))
    frame_iter = iter(depth[2:])
    for frame in depth[:2]:  # Binance's sync: a depth event buffered, then the snapshot
        feed.on_frame(frame, time.time_ns())
    await _caught_up(redis, publisher, within_s=60)  # the snapshots are in before anything is timed
    k = 0
    deadline = time.monotonic() + ROUNDS_WITHIN_S
    try:
        for _ in range(rounds):
            if time.monotonic() > deadline:
                break
            for path in ("one_hop", "two_hop", *(f"markets_{n}" for n in MARKETS if n > 1)):
                extra = int(path.removeprefix("markets_")) - 1 if path.startswith("markets_") else 0
                executor.orders.open = path != "two_hop"
                before = len(executor.submit_latency_ns)
                for frame in itertools.islice(frame_iter, BLOCK):
                    now = time.time_ns()
                    for j in range(1, extra + 1):  # every market ticks at once, the measured one last
                        k += 1
                        publisher.put_nowait(book_stream, _relabel(others[1 + k % (len(others) - 1)], j, now))
                    feed.on_frame(frame, time.time_ns())  # the frame's arrival: parse and all are inside
                    await asyncio.sleep(0.005)  # ~200 frames/s, each handled before the next
                await _caught_up(redis, publisher)
                samples[path] += list(executor.submit_latency_ns)[before:]
            for i in range(20):
                now = time.time_ns()
                publisher.put_nowait("bench:floor", BookUpdate("binance", "BTC/USDT", i, now, now, [], []))
                await asyncio.sleep(0.005)
        executor.orders.open = True
        return samples
    finally:
        floor_consumer.stop()
        await floor_task
        await publisher.close()
        await asyncio.gather(writer, return_exceptions=True)
        await publisher.bus.redis.aclose()
        executor.stop()
        await task
        await redis.flushdb()
        await redis.aclose()
        await db.close()
        admin = await asyncpg.connect(database_url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def _caught_up(redis: Redis, publisher: Publisher, within_s: float = 10.0) -> None:
    """Wait until the executor has read and acked everything on md:book and orders:intents."""
    await publisher.flush()
    deadline = time.monotonic() + within_s
    groups = {streams.md_book("binance"): "executor-md", streams.ORDERS_INTENTS: "executor"}
    while time.monotonic() < deadline:
        done = True
        for stream, group in groups.items():
            last = await redis.xrevrange(stream, count=1)
            info = {g["name"]: g for g in await redis.xinfo_groups(stream)}
            g = info.get(group.encode()) or info.get(group)
            if last and (g is None or g["pending"] or g["last-delivered-id"] != last[0][0]):
                done = False
        if done:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the executor did not catch up with the benchmark's frames")


def _percentiles(samples: list[int]) -> tuple[float, float]:
    s = sorted(samples)
    return round(statistics.median(s) / 1000, 1), round(s[max(0, int(len(s) * 0.99) - 1)] / 1000, 1)


def run(ctx: object) -> dict[str, float | int | str]:
    books = [m for m in read_binance_capture(CAPTURE) if isinstance(m, BookUpdate)]
    figures: dict[str, float | int | str] = {
        "paper_book_updates_per_s": round(_paper_rate(books, 100)),
        "paper_book_updates_per_s_no_orders": round(_paper_rate(books, 0)),
    }
    samples = asyncio.run(_tick_to_order(ctx.redis_url, ctx.database_url, books))  # type: ignore[attr-defined]
    # path -> the (p50, p99, sample count) keys it reports; one market is the headline path itself
    keys: dict[str, list[tuple[str, ...]]] = {
        path: [(f"{prefix}_p50_us", f"{prefix}_p99_us", f"{prefix}_samples")]
        for path, prefix in (
            ("one_hop", "tick_to_order"),
            ("two_hop", "tick_to_order_two_hop"),
            ("floor", "tick_to_order_floor"),
        )
    }
    for n in MARKETS:
        suffix = f"_markets_{n}"
        names = (f"tick_to_order_p50_us{suffix}", f"tick_to_order_p99_us{suffix}", f"tick_to_order_samples{suffix}")
        keys.setdefault("one_hop" if n == 1 else f"markets_{n}", []).append(names)
    p50: dict[str, float] = {}
    for path, key_sets in keys.items():
        for p50_key, p99_key, count_key in key_sets:
            figures[count_key] = len(samples[path])
            if samples[path]:
                p50[path], figures[p99_key] = _percentiles(samples[path])
                figures[p50_key] = p50[path]
    if "one_hop" in p50 and "floor" in p50:
        figures["tick_to_order_floor_ratio"] = round(p50["one_hop"] / p50["floor"], 2)
    figures["tick_to_order_path"] = (
        "raw Binance frame at ingest (parse included) -> md:book -> strategy -> claim+journal (one round trip)"
        " + checks -> paper gateway"
    )
    return figures


if __name__ == "__main__":
    import json

    from bench.context import BenchContext

    with BenchContext.start() as bench_ctx:
        print(json.dumps(run(bench_ctx), indent=2))
