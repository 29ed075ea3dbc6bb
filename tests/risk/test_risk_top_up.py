"""The running risk service's margin top-up: a margin account under the floor with free spot collateral asks
the executor for a transfer (``orders:transfers``) instead of buying back, counts it until the outcome comes
(``orders:events``), and buys back only when the transfer fails or goes unanswered."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from services.executor.gateway import PaperGateway
from services.executor.transfers import Transfers
from services.risk.portfolio import PENDING_NS
from services.risk.record import Recorder
from services.risk.service import RiskService, publish
from shared.bus import RedisBus, connect_redis
from shared.config import BusSettings, Settings
from shared.paper import PaperExchange
from shared.schemas import BookUpdate, Fill, OrderEvent, OrderIntent, WalletTransfer, decode, streams
from shared.sections.risk import CrashSettings, RiskSettings
from shared.signing import RISK, Signer
from tests.control import KEYS

SEC = 1_000_000_000
QUOTE, DEBT, ASK = 1499.0, 10.0, 100.5  # 10 BTC shorted at 100 against 499 USDT: level 1.499 < 1.5 floor


class Clock:
    def __init__(self) -> None:
        self.now = time.time_ns()  # wall clock: the executor refuses transfers asked long ago

    def __call__(self) -> int:
        return self.now


def short_under_the_floor(spot_usdt: float) -> tuple[RiskService, Clock]:
    clock = Clock()
    settings = Settings(
        risk=RiskSettings(crash=CrashSettings(warmup_s=1.0), margin_floor=1.5, margin_target=2.0),
        executor={"initial_balances": {"binance": {"USDT": spot_usdt, "BTC": 1.0}}},
        control=KEYS,
    )
    svc = RiskService(settings, clock)
    svc.on_market([BookUpdate("binance", "BTC/USDT", 1, clock.now, clock.now, [(99.5, 5.0)], [(ASK, 5.0)], True)])
    svc.on_orders([OrderIntent("h1", "binance", "BTC/USDT", "sell", "ioc", DEBT, clock.now, margin_mode="cross")])
    fill = Fill("hf", 100.0, DEBT, 0.0, "USDT", clock.now)
    svc.on_orders([OrderEvent("h1", "binance", "BTC/USDT", "sell", "filled", clock.now, fills=[fill])])
    svc.portfolio.margin["binance"].quote += QUOTE - 1000.0  # collateral beside the proceeds
    assert svc.portfolio.margin_level("binance") == pytest.approx(1.499)
    return svc, clock


def test_under_the_floor_with_spot_collateral_it_asks_a_top_up_and_buys_nothing_back() -> None:
    svc, clock = short_under_the_floor(spot_usdt=10_000.0)
    actions = svc.tick()
    assert actions.intents == []
    (top_up,) = actions.top_ups
    (low,) = [e for e in actions.events if e.kind == "margin_low"]
    need = QUOTE * (2.0 / 1.499 - 1)  # to the 2.0 target
    assert top_up.amount == pytest.approx(need) and top_up.asset == "USDT"
    assert low.detail["top_up"] == pytest.approx(need) and low.detail["reduced"] == 0.0
    assert low.detail["top_up_by"] == "executor" and str(low.detail["transfer_id"]).startswith("tu-")
    # asked for, not answered yet: counted, so neither the next check nor a second top-up acts on it
    assert svc.portfolio.margin_level("binance") == pytest.approx(2.0)
    clock.now += 6 * SEC
    assert not svc.tick().events
    done = WalletTransfer(
        str(low.detail["transfer_id"]), "binance", "USDT", top_up.amount, "spot", "cross", clock.now, status="done"
    )
    equity = svc.portfolio.equity()
    svc.on_orders([done, done])  # a redelivered outcome counts once
    assert svc.portfolio.margin_level("binance") == pytest.approx(2.0)
    assert svc.portfolio.spot("binance", "USDT") == pytest.approx(10_000.0 - need)
    assert not svc.portfolio.pending_transfers
    assert svc.portfolio.equity() == pytest.approx(equity)  # our own money moved between our wallets


@pytest.mark.parametrize("outcome", ["rejected", "unknown", None])
def test_a_failed_or_unanswered_top_up_falls_back_to_buying_back(outcome: str | None) -> None:
    svc, clock = short_under_the_floor(spot_usdt=10_000.0)
    (top_up,) = svc.tick().top_ups
    (tid,) = svc.portfolio.pending_transfers
    if outcome is None:
        clock.now += PENDING_NS + SEC  # the executor never answered
    else:
        clock.now += 6 * SEC
        t = WalletTransfer(tid, "binance", "USDT", top_up.amount, "spot", "cross", clock.now, status=outcome)  # type: ignore[arg-type]
        svc.on_orders([t])
    actions = svc.tick()
    assert actions.top_ups == []  # the venue's top-ups are blocked a while
    (buy,) = actions.intents
    assert buy.side == "buy" and buy.reduce_only
    assert (QUOTE - buy.amount * ASK) / ((DEBT - buy.amount) * ASK) == pytest.approx(2.0)
    assert svc.portfolio.spot("binance", "USDT") == 10_000.0


def test_without_spot_collateral_the_buy_back_alone_restores_the_level() -> None:
    svc, _ = short_under_the_floor(spot_usdt=0.0)
    actions = svc.tick()
    assert actions.top_ups == [] and len(actions.intents) == 1


async def published(redis: Redis, stream: str) -> list[Any]:
    return [m for _, f in await redis.xrange(stream) for m in decode(f[streams.FIELD.encode()])]  # type: ignore[union-attr,index,arg-type]


@pytest.fixture
async def redis(isolated: tuple[str, str]) -> AsyncIterator[Redis]:
    client = connect_redis(isolated[1])
    yield client
    await client.aclose()


@pytest.mark.integration
async def test_the_top_up_goes_over_the_bus_to_the_paper_executor_and_its_outcome_comes_back(redis: Redis) -> None:
    svc, clock = short_under_the_floor(spot_usdt=10_000.0)
    bus = RedisBus(redis, BusSettings())
    actions = svc.tick()
    await publish(bus, Recorder(bus, None, Signer.of(Settings(control=KEYS).control, RISK)), actions)

    (asked,) = await published(redis, streams.ORDERS_TRANSFERS)
    assert isinstance(asked, WalletTransfer) and asked.status == "requested" and asked.reason == "margin_top_up"
    (low,) = [e for e in await published(redis, streams.RISK_EVENTS) if e.kind == "margin_low"]
    assert low.detail["transfer_id"] == asked.transfer_id and low.detail["reduced"] == 0.0
    assert not await redis.xlen(streams.ORDERS_INTENTS)  # nothing bought back

    exchange = PaperExchange(Settings().executor.venues, seed=1, id_prefix="F-")
    exchange.deposit("binance", "USDT", 10_000.0, clock.now, ref="initial")
    transfers = Transfers(redis, BusSettings(), PaperGateway(exchange), "flow", lambda: None)
    await transfers.handle(asked)
    outcome = await published(redis, streams.ORDERS_EVENTS)
    svc.on_orders(outcome)
    assert [(o.transfer_id, o.status) for o in outcome] == [(asked.transfer_id, "done")]
    assert float(exchange.accounts.wallet("binance", "cross").get("USDT").free) == pytest.approx(asked.amount)
    assert svc.portfolio.margin_level("binance") == pytest.approx(2.0, rel=1e-6)
    assert svc.portfolio.spot("binance", "USDT") == pytest.approx(10_000.0 - asked.amount, rel=1e-9)
    clock.now += 6 * SEC
    assert not svc.tick().events  # saved by the top-up: nothing bought back later either
