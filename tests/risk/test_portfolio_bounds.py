"""Risk remembers a bounded number of fill ids: the newest, loaded at start from PostgreSQL too."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from services.risk.portfolio import Portfolio
from services.risk.restore import load_portfolio
from shared.bounded import LruSet
from shared.config import Settings
from shared.schemas import Fill, OrderEvent, WalletTransfer
from shared.storage import Database


def event(fill_id: str) -> OrderEvent:
    fill = Fill(fill_id, 100.0, 1.0, 0.0, "USDT", time.time_ns())
    return OrderEvent(f"o-{fill_id}", "binance", "BTC/USDT", "buy", "filled", time.time_ns(), fills=[fill])


def test_inside_the_bound_a_fill_counts_once_and_the_memory_stays_bounded():
    p = Portfolio.from_balances({"binance": {"USDT": 10_000.0}})
    p.seen_fills = LruSet(3)
    for i in range(5):
        p.on_order_event(event(f"f{i}"))
    p.on_order_event(event("f4"))  # redelivered: within the bound, counted once
    assert p.spot("binance", "BTC") == 5.0
    assert list(p.seen_fills) == ["f2", "f3", "f4"]


@pytest.mark.integration
async def test_start_loads_only_the_newest_fills_and_a_redelivered_one_counts_once(isolated: tuple[str, str]):
    dsn, _ = isolated
    db = await Database.connect(dsn, Settings().storage)
    try:
        await db.migrate()
        now = datetime.now(UTC)
        for i, fid in enumerate(("f-oldest", "f-old", "f-recent")):
            await db.execute(
                "INSERT INTO fills (exchange, fill_id, client_order_id, symbol, side, price, amount, fee, fee_asset,"
                " liquidity, ts) VALUES ('binance', $1, 'o', 'BTC/USDT', 'buy', 100, 1, 0, 'USDT', 'taker', $2)",
                fid,
                now - timedelta(hours=3 - i),
            )
        portfolio = await load_portfolio(db, Settings(), fills_kept=2)
        assert list(portfolio.seen_fills) == ["f-old", "f-recent"]
        assert portfolio.seen_fills.maxsize == 2
        before = portfolio.spot("binance", "BTC")
        portfolio.on_order_event(event("f-old"))  # orders:events delivers a fill the stored balances include
        assert portfolio.spot("binance", "BTC") == before
    finally:
        await db.close()


@pytest.mark.integration
async def test_a_top_up_outcome_delivered_again_after_a_restart_counts_once(isolated: tuple[str, str]):
    """The executor stores a transfer's ledger rows with the new balances; its outcome on orders:events
    may come again to a restarted risk service, which must not move the collateral a second time."""
    dsn, _ = isolated
    db = await Database.connect(dsn, Settings().storage)
    try:
        await db.migrate()
        now = datetime.now(UTC)
        await db.execute(
            "INSERT INTO balances (exchange, wallet, asset, free, locked, borrowed, interest, updated_at) VALUES"
            " ('binance', 'spot', 'USDT', 850, 0, 0, 0, $1), ('binance', 'cross', 'USDT', 150, 0, 0, 0, $1)",
            now,
        )
        for wallet, delta in (("spot", -150), ("cross", 150)):
            await db.execute(
                "INSERT INTO ledger (exchange, wallet, asset, delta, kind, ref, ts)"
                " VALUES ('binance', $1, 'USDT', $2, 'transfer', 'M7', $3)",
                wallet,
                delta,
                now,
            )
        portfolio = await load_portfolio(db, Settings())
        assert portfolio.margin_assets("binance") == 150.0 and portfolio.spot("binance", "USDT") == 850.0
        done = WalletTransfer("tu-b-1", "binance", "USDT", 150.0, "spot", "cross", 1, status="done")
        portfolio.on_transfer(msgspec.structs.replace(done, venue_transfer_id="M7"), 2)
        assert portfolio.margin_assets("binance") == 150.0 and portfolio.spot("binance", "USDT") == 850.0
        portfolio.on_transfer(msgspec.structs.replace(done, transfer_id="tu-b-2", venue_transfer_id="M8"), 3)
        assert portfolio.margin_assets("binance") == 300.0 and portfolio.spot("binance", "USDT") == 700.0
    finally:
        await db.close()
