"""Margin top-ups through ccxt against the local fake Binance: the transfer reaches the venue once, a lost
answer is reported unknown and never resent, a refusal is a rejection (real Redis)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt
import pytest
from redis.asyncio import Redis

from services.executor.ccxt_gateway import CcxtGateway
from services.executor.transfers import CLAIM_KEY, Transfers
from shared.bus import connect_redis
from shared.config import BusSettings
from shared.schemas import RiskEvent, WalletTransfer, decode, streams
from tests.executor.fake_venue.harness import fake_venue

TRANSFER = "POST /sapi/v1/asset/transfer"


def request(tid: str, amount: float) -> WalletTransfer:
    return WalletTransfer(tid, "binance", "USDT", amount, "spot", "cross", time.time_ns(), reason="margin_top_up")


async def published(redis: Redis, stream: str) -> list[Any]:
    return [m for _, f in await redis.xrange(stream) for m in decode(f[streams.FIELD.encode()])]  # type: ignore[union-attr,index,arg-type]


@pytest.fixture
async def redis(isolated: tuple[str, str]) -> AsyncIterator[Redis]:
    client = connect_redis(isolated[1])
    yield client
    await client.aclose()


@pytest.mark.integration
async def test_a_top_up_reaches_the_fake_venue_once_and_a_lost_answer_is_never_resent(redis: Redis) -> None:
    async with fake_venue(timeout_ms=3000) as (fake, cfg):
        gateway = CcxtGateway({"binance": cfg})
        woken: list[int] = []
        transfers = Transfers(redis, BusSettings(), gateway, "t1", lambda: woken.append(1))
        try:
            first = request("tu-ccxt-1", 150.0)
            await transfers.handle(first)
            await transfers.handle(first)  # a redelivered entry: claimed and done already
            assert fake.requests.count(TRANSFER) == 1
            assert fake.balances["spot"]["USDT"] == Decimal(100_000) - 150
            assert fake.balances["cross"]["USDT"] == Decimal(5_000) + 150
            (done,) = [m for m in await published(redis, streams.ORDERS_EVENTS) if isinstance(m, WalletTransfer)]
            assert done.status == "done" and done.venue_transfer_id not in ("", "None") and done.amount == 150.0
            ledger = {(e.wallet, e.asset): e.delta for e in gateway.drain_ledger() if e.kind == "transfer"}
            assert ledger == {("spot", "USDT"): Decimal(-150), ("cross", "USDT"): Decimal(150)}  # the audit's books
            assert woken  # the reports loop stores the new balances at once

            client = gateway.client("binance")
            real = client.transfer

            async def answer_lost(*args: Any, **kwargs: Any) -> Any:
                await real(*args, **kwargs)  # the venue moves the funds; its answer never arrives
                raise ccxt.RequestTimeout("binance GET timed out")

            client.transfer = answer_lost
            lost = request("tu-ccxt-2", 10.0)
            await transfers.handle(lost)
            await transfers.handle(lost)
            assert fake.requests.count(TRANSFER) == 2  # sent once, never again
            outcomes = [m for m in await published(redis, streams.ORDERS_EVENTS) if isinstance(m, WalletTransfer)]
            assert [o.status for o in outcomes] == ["done", "unknown"]
            assert outcomes[1].reason == "venue.RequestTimeout"
            assert (await redis.get(f"{CLAIM_KEY}tu-ccxt-2")) == b"unknown:"
            events = [m for m in await published(redis, streams.RISK_EVENTS) if isinstance(m, RiskEvent)]
            assert [(e.kind, e.severity, e.detail["status"]) for e in events] == [
                ("margin_top_up", "info", "done"),
                ("margin_top_up", "critical", "unknown"),
            ]

            client.transfer = real
            await transfers.handle(request("tu-ccxt-3", 1e9))  # more than the spot wallet holds: refused
            assert fake.requests.count(TRANSFER) == 3
            refused = (await published(redis, streams.ORDERS_EVENTS))[-1]
            assert isinstance(refused, WalletTransfer) and refused.status == "rejected", refused
            assert fake.balances["cross"]["USDT"] == Decimal(5_000) + 160
        finally:
            await gateway.close()
