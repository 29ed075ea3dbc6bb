"""Margin top-ups through the running executor on the paper venue (real Redis and PostgreSQL): a
``WalletTransfer`` on ``orders:transfers`` moves spot collateral into the cross-margin wallet once, while
trading is halted too; a replayed entry moves nothing; one claimed with no outcome is reported unknown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from services.executor.gateway import PaperGateway
from services.executor.service import Executor
from services.executor.transfers import CLAIM_KEY
from shared.bus import connect_redis
from shared.config import Settings
from shared.paper import PaperExchange
from shared.schemas import RiskControl, RiskEvent, WalletTransfer, decode, encode, streams
from shared.storage import Database
from tests.control import KEYS, signed

FAST_BUS = {"block_ms": 50, "claim_idle_ms": 1000, "claim_interval_ms": 200}


def request(tid: str, amount: float) -> WalletTransfer:
    return WalletTransfer(tid, "binance", "USDT", amount, "spot", "cross", time.time_ns(), reason="margin_top_up")


async def published(redis: Redis, stream: str) -> list[Any]:
    return [m for _, f in await redis.xrange(stream) for m in decode(f[streams.FIELD.encode()])]  # type: ignore[union-attr,index,arg-type]


async def until(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        await asyncio.sleep(0.02)
    return result


async def acked(redis: Redis, group: str, entry_id: bytes) -> bool:
    """Whether ``group`` has delivered and acked ``entry_id`` of orders:transfers."""
    for g in await redis.xinfo_groups(streams.ORDERS_TRANSFERS):
        name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
        last = g["last-delivered-id"]
        last = last.decode() if isinstance(last, bytes) else last
        ms, _, seq = last.partition("-")
        want_ms, _, want_seq = entry_id.decode().partition("-")
        if name == group and (int(ms), int(seq)) >= (int(want_ms), int(want_seq)) and g["pending"] == 0:
            return True
    return False


@pytest.fixture
async def servers(isolated: tuple[str, str]) -> AsyncIterator[tuple[Redis, Database]]:
    dsn, rurl = isolated
    redis = connect_redis(rurl)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    yield redis, db
    await db.close()
    await redis.aclose()


@pytest.mark.integration
async def test_a_top_up_moves_spot_collateral_into_margin_once_even_while_halted(
    servers: tuple[Redis, Database],
) -> None:
    redis, db = servers
    settings = Settings(
        mode="replay",
        bus=FAST_BUS,
        executor={"strategy_enabled": False, "initial_balances": {"binance": {"USDT": 1_000.0}}},
        control=KEYS,
    )
    exchange = PaperExchange(settings.executor.venues, seed=1, id_prefix="T-")
    executor = Executor(settings, redis, db, PaperGateway(exchange), run_id="transfers")
    task = asyncio.create_task(executor.run())
    group = f"{settings.executor.group}-transfers"
    try:
        await asyncio.wait_for(executor.ready.wait(), 20)
        halt = signed(RiskControl("halt", time.time_ns(), reason="kill switch", issued_by="operator", cause="human"))
        await redis.xadd(streams.RISK_CONTROL, {streams.FIELD: encode(halt)})
        await until("the halt applied", lambda: asyncio.sleep(0, executor.guard.halted))

        wallet = exchange.accounts.wallet
        top_up = request("tu-paper-1", 150.0)
        first = await redis.xadd(streams.ORDERS_TRANSFERS, {streams.FIELD: encode(top_up)})
        await until("the top-up acked", lambda: acked(redis, group, first))  # type: ignore[arg-type]
        assert wallet("binance", "cross").get("USDT").free == Decimal(150)
        assert wallet("binance", "spot").get("USDT").free == Decimal(850)

        again = await redis.xadd(streams.ORDERS_TRANSFERS, {streams.FIELD: encode(top_up)})  # replayed
        await until("the replay acked", lambda: acked(redis, group, again))  # type: ignore[arg-type]
        assert wallet("binance", "cross").get("USDT").free == Decimal(150)  # moved once
        (done,) = [m for m in await published(redis, streams.ORDERS_EVENTS) if isinstance(m, WalletTransfer)]
        assert done.status == "done" and done.venue_transfer_id.startswith("MT-") and done.amount == 150.0
        (event,) = [m for m in await published(redis, streams.RISK_EVENTS) if isinstance(m, RiskEvent)]
        assert event.kind == "margin_top_up" and event.detail["transfer_id"] == "tu-paper-1"

        async def stored() -> bool:  # the reports loop stored the moved balances: a restart restores them
            rows = await db.fetch("SELECT wallet, free FROM balances WHERE exchange = 'binance' AND asset = 'USDT'")
            return {r["wallet"]: r["free"] for r in rows} == {"spot": Decimal(850), "cross": Decimal(150)}

        await until("the balances stored", stored)

        # A run that died between its claim and the outcome: the transfer may have moved; never resent.
        await redis.set(f"{CLAIM_KEY}tu-paper-2", "claimed:dead-run")
        lost = await redis.xadd(streams.ORDERS_TRANSFERS, {streams.FIELD: encode(request("tu-paper-2", 100.0))})
        await until("the lost one acked", lambda: acked(redis, group, lost))  # type: ignore[arg-type]
        outcomes = [m for m in await published(redis, streams.ORDERS_EVENTS) if isinstance(m, WalletTransfer)]
        assert [(o.transfer_id, o.status) for o in outcomes] == [("tu-paper-1", "done"), ("tu-paper-2", "unknown")]
        assert wallet("binance", "cross").get("USDT").free == Decimal(150)

        stale = msgspec.structs.replace(request("tu-paper-3", 10.0), ts=time.time_ns() - 61 * 10**9)
        old = await redis.xadd(streams.ORDERS_TRANSFERS, {streams.FIELD: encode(stale)})
        await until("the stale one acked", lambda: acked(redis, group, old))  # type: ignore[arg-type]
        last = (await published(redis, streams.ORDERS_EVENTS))[-1]
        assert (last.transfer_id, last.status, last.reason) == ("tu-paper-3", "rejected", "transfer.expired")
    finally:
        executor.stop()
        await asyncio.wait_for(task, 20)
