"""Cross-venue arbitrage through the executor on real Redis and PostgreSQL, end to end.

Venue A is Binance's recorded BTC/USDT depth (tests/data/executor/binance_btcusdt_20240809_20s.gz,
normalized by the ingest normalizer). Venue ``synth_b`` is SYNTHETIC: the same updates with every
price shifted up 0.6% and noised by a fixed function of the price (so a level's deletions still hit
it). No simultaneous capture of one market on two supported venues exists to use instead.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from services.executor.gateway import PaperGateway
from services.executor.service import Executor
from services.ingest.normalize import normalize
from shared.config import Settings
from shared.paper import PaperExchange
from shared.schemas import ArbEvent, BookUpdate, decode, encode, streams
from shared.schemas.messages import AnyMessage
from shared.storage import Database

CAPTURE = Path(__file__).parent.parent / "data" / "executor" / "binance_btcusdt_20240809_20s.gz"
SHIFT = 0.006


def recorded_books() -> list[BookUpdate]:
    out, err = io.BytesIO(), io.StringIO()
    assert normalize(CAPTURE, "binance", None, out, err) == 0, err.getvalue()
    messages = [msgspec.json.decode(line, type=AnyMessage) for line in out.getvalue().splitlines()]
    return [m for m in messages if isinstance(m, BookUpdate)]


def synthetic(price: float) -> float:
    """SYNTHETIC venue B's price for venue A's level: shifted, plus a fixed noise under half a tick."""
    return price * (1 + SHIFT) + ((round(price * 100) * 7919) % 9 - 4) * 0.001


def derived(update: BookUpdate, now: int) -> BookUpdate:
    return BookUpdate("synth_b", update.symbol, update.seq, now, now, [(synthetic(p), a) for p, a in update.bids],
                      [(synthetic(p), a) for p, a in update.asks], snapshot=update.snapshot)  # fmt: skip


def settings() -> Settings:
    sim = {"taker_fee": 0.001, "maker_fee": 0.001, "fee_in": "quote"}  # fees in USDT: the BTC legs net to 0
    return Settings(
        mode="replay",
        bus={"block_ms": 20, "claim_idle_ms": 1000, "claim_interval_ms": 200},
        executor={
            "strategy_enabled": False,
            "rl_enabled": False,
            "venues": {"binance": sim, "synth_b": sim},
            "market_data_venues": ["binance", "synth_b"],
            # binance's USDT runs out on the buy: it comes back through XNO (USDT itself settles too slowly)
            "initial_balances": {"binance": {"USDT": 3_000.0, "BTC": 0.1}, "synth_b": {"USDT": 10_000.0, "BTC": 0.1}},
            "transfers": {"BTC": {"settle_s": 0.5, "fee": 0.00001}, "XNO": {"settle_s": 1.0, "fee": 0.0}},
        },
        arbitrage={
            "enabled": False,  # the cycle strategy: one venue's triangles, none here
            "cross_enabled": True,
            "cross_max_amount": {"BTC": 0.05},
            "cross_rebalance_below": 0.99,
            "max_executions_per_hour": 1,  # one execution: its ledger is the whole story
            "slippage_bps": 5.0,
            "book_max_age_ms": 5_000,
        },
    )


async def tick_xno(redis: object, stop: asyncio.Event) -> None:
    """SYNTHETIC XNO/USDT books on both venues, refreshed as a live feed would be (the carry coin's market)."""
    seq = 0
    while not stop.is_set():
        seq += 1
        for venue in ("binance", "synth_b"):
            now = time.time_ns()
            book = BookUpdate(
                venue, "XNO/USDT", seq, now, now, [(0.9999, 50_000.0)], [(1.0001, 50_000.0)], snapshot=True
            )
            await redis.xadd(streams.md_book(venue), {streams.FIELD: encode(book)})  # type: ignore[attr-defined]
        await asyncio.sleep(0.1)


async def _known(strategy: Any, symbol: str) -> bool:
    return {v for v, s in strategy.engine.tops if s == symbol} == {"binance", "synth_b"}


async def until(what: str, check: Callable[[], Awaitable[object]], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.integration
async def test_two_venues_one_execution_exact_ledger_profit_and_a_charged_rebalance(isolated: tuple[str, str]):
    dsn, redis_url = isolated
    from shared.bus import connect_redis

    redis = connect_redis(redis_url)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    cfg = settings()
    exchange = PaperExchange(cfg.executor.venues, transfers=cfg.executor.transfers, seed=1, id_prefix="X-")
    executor = Executor(cfg, redis, db, PaperGateway(exchange), run_id="xa")
    task = asyncio.create_task(executor.run())
    stop = asyncio.Event()
    ticker = asyncio.create_task(tick_xno(redis, stop))
    try:
        await asyncio.wait_for(executor.ready.wait(), 20)
        # the carry coin's market must be known before the BTC books open the gap (else the USDT going back
        # may travel as BTC, the only other coin listed on both venues: seen on a fast machine)
        xarb = executor.strategies.by_name["xarb"]
        await until("XNO books on both venues", lambda: _known(xarb, "XNO/USDT"))
        for update in recorded_books()[:20]:
            now = time.time_ns()
            a = BookUpdate("binance", update.symbol, update.seq, now, now, update.bids, update.asks,
                           snapshot=update.snapshot)  # fmt: skip
            await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(a)})
            await redis.xadd(streams.md_book("synth_b"), {streams.FIELD: encode(derived(update, now))})

        rows = await until("the execution", lambda: db.fetch("SELECT * FROM arb_executions WHERE strategy = 'xarb'"))
        [execution] = rows  # type: ignore[misc]
        assert execution["status"] == "completed" and execution["exchange"] == "binance>synth_b"
        moves = await until("both moves", lambda: _two(db.fetch("SELECT * FROM arb_transfers ORDER BY created_at")))
        [transfer] = [m for m in moves if m["asset"] == "BTC"]  # type: ignore[union-attr]
        [carry] = [m for m in moves if m["asset"] == "XNO"]  # type: ignore[union-attr]

        # the ledger's USDT change from the two legs (fills and fees, both venues) is the realised profit, exactly
        cids = [f"{execution['execution_id']}-buy", f"{execution['execution_id']}-sell"]
        fills = await db.fetch("SELECT fill_id FROM fills WHERE client_order_id = ANY($1::text[])", cids)
        refs = [f["fill_id"] for f in fills]
        usdt = await db.fetch("SELECT sum(delta) AS s FROM ledger WHERE asset = 'USDT' AND ref = ANY($1::text[])", refs)
        btc = await db.fetch("SELECT sum(delta) AS s FROM ledger WHERE asset = 'BTC' AND ref = ANY($1::text[])", refs)
        assert len(refs) >= 2 and btc[0]["s"] == 0
        assert float(usdt[0]["s"]) == pytest.approx(execution["realized_profit"], abs=1e-9)
        assert execution["realized_profit"] > 0

        # the rebalancing transfer: recorded by the venue's ledger and charged to the strategy's PnL
        bought = float((await db.fetch("SELECT filled FROM orders WHERE client_order_id = $1", cids[0]))[0]["filled"])
        assert (transfer["from_venue"], transfer["to_venue"], transfer["asset"]) == ("binance", "synth_b", "BTC")
        assert transfer["fee"] == 0.00001 and transfer["amount"] == pytest.approx(bought + 0.00001, abs=1e-8)
        ledger = await db.fetch("SELECT exchange, kind, delta FROM ledger WHERE ref = $1 ORDER BY id",
                                transfer["transfer_id"])  # fmt: skip
        assert ("binance", "transfer_fee", Decimal("-0.00001")) in [
            (r["exchange"], r["kind"], r["delta"]) for r in ledger
        ]
        await until("the transfer to settle", lambda: _settled(db, transfer["transfer_id"]))
        assert exchange.accounts.wallet("synth_b").get("BTC").free == pytest.approx(Decimal("0.1"), abs=Decimal("1e-8"))

        # arb:events carries the opportunity, the execution and the transfer, the PnL net of the transfer's cost
        entries = await redis.xrange(streams.ARB_EVENTS)
        events = [m for _, e in entries for m in decode(e[streams.FIELD.encode()]) if isinstance(m, ArbEvent)]
        kinds = {e.kind for e in events if e.strategy == "xarb"}
        assert kinds == {"opportunity", "execution", "transfer"}
        [sent] = [e for e in events if e.kind == "transfer" and e.assets == ["BTC"]]
        assert sent.realized_profit == pytest.approx(-transfer["cost"]) and transfer["cost"] > 0

        # USDT came back to binance through XNO: bought on synth_b, moved in ~1 s, sold on binance; its cost is
        # exactly the USDT the two carry orders lost in the ledger, and is charged to the PnL too
        assert (carry["from_venue"], carry["to_venue"], carry["cost_asset"]) == ("synth_b", "binance", "USDT")
        carry_cids = [o["client_order_id"] for o in await db.fetch("SELECT client_order_id FROM orders WHERE "
                      "symbol = 'XNO/USDT' AND strategy = 'xarb'")]  # fmt: skip
        carry_fills = [f["fill_id"] for f in await db.fetch(
            "SELECT fill_id FROM fills WHERE client_order_id = ANY($1::text[])", carry_cids)]  # fmt: skip
        lost = await db.fetch("SELECT sum(delta) AS s FROM ledger WHERE asset = 'USDT' AND ref = ANY($1::text[])",
                              carry_fills)  # fmt: skip
        assert len(carry_cids) == 2 and float(-lost[0]["s"]) == pytest.approx(carry["cost"], abs=1e-9)
        assert await db.fetch("SELECT 1 FROM ledger WHERE ref = $1 AND asset = 'XNO'", carry["transfer_id"])
        pnl = [e.pnl for e in events if e.strategy == "xarb" and e.kind != "opportunity"]
        assert pnl[-1] == pytest.approx(execution["realized_profit"] - transfer["cost"] - carry["cost"], abs=1e-9)
    finally:
        stop.set()
        await ticker
        executor.stop()
        await asyncio.wait_for(task, 20)
        await redis.aclose()
        await db.close()


async def _settled(db: Database, transfer_id: str) -> bool:
    rows = await db.fetch("SELECT 1 FROM ledger WHERE ref = $1 AND exchange = 'synth_b'", transfer_id)
    return bool(rows)


async def _two(rows: Awaitable[list[object]]) -> list[object] | None:
    found = await rows
    return found if len(found) >= 2 else None
