"""The strategy protocol's host and registry, and the gateway hooks that keep the host free of venue kinds."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from services.executor.ccxt_gateway import CcxtGateway
from services.executor.gateway import PaperGateway, StoredOrder
from services.executor.store import ExecutorStore
from services.executor.strategies.arbitrage import CycleArbitrage
from services.executor.strategies.arbitrage_cross import CrossArbitrage
from services.executor.strategies.base import Feed, StrategyBase, StrategyContext
from services.executor.strategies.host import StrategyHost
from services.executor.strategies.momentum import MomentumStrategy
from services.executor.strategies.registry import build_strategies
from services.executor.strategies.rl import RLStrategy
from shared.config import Settings
from shared.paper import PaperExchange
from shared.paper.book import SimBook
from shared.paper.exchange import MarginNotice
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, PolicyUpdate, Trade


def context(settings: Settings, free: dict[tuple[str, str], float] | None = None) -> StrategyContext:
    return StrategyContext(settings, "t", ExecutorStore(None), lambda v, a: (free or {}).get((v, a)))  # type: ignore[arg-type]


def intent(cid: str) -> OrderIntent:
    return OrderIntent(cid, "binance", "BTC/USDT", "buy", "market", 1.0, 0)


class Recorder(StrategyBase):
    """Answers every hook it is fed with one intent named after the hook."""

    feeds: ClassVar[frozenset[Feed]] = frozenset({"trade", "policy"})

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = self.flushed = 0

    async def start(self) -> list[OrderIntent]:
        self.started += 1
        return [intent(f"{self.name}-start")]

    def on_book(self, update: BookUpdate, book: SimBook) -> list[OrderIntent]:
        raise AssertionError("not fed books: its feeds do not name them")

    def on_trade(self, trade: Trade) -> list[OrderIntent]:
        return [intent(f"{self.name}-trade-{trade.trade_id}")]

    async def on_policy(self, update: PolicyUpdate) -> list[OrderIntent]:
        return [intent(f"{self.name}-policy-{update.policy_id}")]

    async def flush(self) -> None:
        self.flushed += 1


class Broken(StrategyBase):
    name = "broken"

    async def start(self) -> list[OrderIntent]:
        raise RuntimeError("no database")

    async def flush(self) -> None:
        raise RuntimeError("no database")


@pytest.mark.parametrize(
    ("mode", "executor", "arbitrage", "expected"),
    [
        ("replay", {}, {}, ["arb", "xarb", "momentum", "rl"]),  # every one on by default in replay mode
        ("paper", {}, {}, []),
        ("paper", {"strategy_enabled": True, "rl_enabled": True}, {"enabled": True}, ["arb", "xarb", "momentum", "rl"]),
        ("replay", {"strategy_enabled": False, "rl_enabled": False}, {"enabled": False}, []),
    ],
)
def test_the_registry_builds_what_the_settings_turn_on(
    mode: str, executor: dict[str, Any], arbitrage: dict[str, Any], expected: list[str]
) -> None:
    settings = Settings(mode=mode, executor=executor, arbitrage=arbitrage)
    built = build_strategies(context(settings))
    assert list(built) == expected
    kinds = {"arb": CycleArbitrage, "xarb": CrossArbitrage, "momentum": MomentumStrategy, "rl": RLStrategy}
    for name, strategy in built.items():
        assert isinstance(strategy, kinds[name]) and strategy.name == name


async def test_the_host_feeds_each_strategy_what_it_names_in_registry_order(caplog: pytest.LogCaptureFixture) -> None:
    factories = {"a": lambda ctx: Recorder("a"), "off": lambda ctx: None, "b": lambda ctx: Recorder("b")}
    host = StrategyHost(context(Settings(mode="paper")), factories)
    assert list(host.by_name) == ["a", "b"]
    assert host.wants("trade") and host.wants("policy") and not host.wants("book") and not host.wants("order_event")
    trade = Trade("binance", "BTC/USDT", "7", 100.0, 1.0, "buy", 0, 0)
    assert [i.client_order_id for i in host.on_trade(trade)] == ["a-trade-7", "b-trade-7"]
    update = BookUpdate("binance", "BTC/USDT", 1, 0, 0, [(99.0, 1.0)], [(101.0, 1.0)], snapshot=True)
    assert host.on_book(update, host.apply(update)) == []
    assert host.books[("binance", "BTC/USDT")].mid() == 100.0
    policies = [PolicyUpdate("p1", "ppo", "uri", 0)]
    assert [i.client_order_id for i in await host.on_policies(policies)] == ["a-policy-p1", "b-policy-p1"]
    assert [i.client_order_id for i in await host.start()] == ["a-start", "b-start"]

    broken = StrategyHost(
        context(Settings(mode="paper")), {"broken": lambda ctx: Broken(), "a": lambda ctx: Recorder("a")}
    )
    with caplog.at_level(logging.ERROR, logger="services.executor.strategies.host"):
        assert [i.client_order_id for i in await broken.start()] == ["a-start"]  # the broken one stays idle
        await broken.flush()  # its records failing must not stall the others' nor raise
    recorder = broken.by_name["a"]
    assert isinstance(recorder, Recorder) and recorder.flushed == 1
    assert "strategy broken failed to start" in caplog.text and "records of strategy broken" in caplog.text


def test_momentum_checks_funds_only_where_the_gateway_can_tell() -> None:
    settings = Settings(
        mode="replay",
        executor={"strategy_lookback": 2, "strategy_threshold_bps": 1, "strategy_cooldown_s": 0},
    )
    for free, expected in (({("binance", "USDT"): 0.0}, []), ({}, ["buy"])):  # 0 free: no buy; unknown: buy
        strategy = MomentumStrategy(settings.executor, "t", context(settings, free).free_balance)
        sides = []
        for seq, mid in enumerate((100.0, 101.0), 1):
            update = BookUpdate("binance", "BTC/USDT", seq, seq, seq, [(mid - 0.5, 1.0)], [(mid + 0.5, 1.0)], True)
            book = SimBook()
            book.apply(update)
            sides += [i.side for i in strategy.on_book(update, book)]
        assert sides == expected


async def test_the_paper_gateway_puts_back_an_order_whose_row_held_no_intent_at_restore() -> None:
    """``restore`` rebuilds resting orders from rows holding their intent; one a report stored before its intent
    (the run died in between) comes back when the intent is taken over, once."""
    settings = Settings(mode="replay")
    exchange = PaperExchange(settings.executor.venues, seed=1)
    gateway = PaperGateway(exchange, clock=lambda: 10)
    exchange.deposit("binance", "USDT", 1_000.0, 1, ref="initial")
    intent = OrderIntent("r1", "binance", "BTC/USDT", "buy", "limit", 0.01, 1, price=100.0)
    for _ in range(2):
        await gateway.follow(StoredOrder(intent, "accepted", "p-7", Decimal(0), Decimal(0)))
    assert [(o.client_order_id, o.order_id) for o in exchange.open_orders("binance")] == [("r1", "p-7")]


def test_the_paper_gateway_hooks() -> None:
    settings = Settings(mode="replay")
    exchange = PaperExchange(settings.executor.venues, seed=1)
    gateway = PaperGateway(exchange)
    woken = []
    gateway.on_report(lambda: woken.append(1))
    exchange.deposit("binance", "USDT", 1_000.0, 1, ref="initial")
    assert gateway.free_balance("binance", "USDT") == 1_000.0
    assert gateway.free_balance("binance", "XYZ") == 0.0
    gateway.on_market_data(BookUpdate("nowhere", "BTC/USDT", 1, 0, 0, [(1.0, 1.0)], [(2.0, 1.0)], snapshot=True))
    assert woken == []  # not a simulated venue: nothing to fill, nothing to poll
    gateway.on_market_data(BookUpdate("binance", "BTC/USDT", 1, 0, 0, [(1.0, 1.0)], [(2.0, 1.0)], snapshot=True))
    assert woken == [1] and exchange.book("binance", "BTC/USDT").mid() is not None
    assert gateway.margin_levels(["binance"]) == {"binance": None}  # no margin wallet: no level
    exchange.notices.append(MarginNotice("liquidation", "binance", "cross", Decimal("1.05"), 5))
    (event,) = gateway.notices()
    assert (event.kind, event.severity, event.exchange, event.detail) == (
        "liquidation",
        "critical",
        "binance",
        {"wallet": "cross", "margin_level": 1.05},
    )
    assert gateway.notices() == [] and exchange.notices == []


def test_a_real_venue_keeps_the_protocol_defaults() -> None:
    gateway = CcxtGateway({})
    gateway.on_market_data(Trade("binance", "BTC/USDT", "1", 1.0, 1.0, "buy", 0, 0))  # no-op
    assert gateway.free_balance("binance", "USDT") is None  # unknown without a round trip
    assert gateway.margin_levels(["binance"]) == {} and gateway.next_due() is None and gateway.notices() == []
    assert gateway.poll_interval_s == 1.0


def test_order_events_reach_only_the_strategies_that_follow_them() -> None:
    host = StrategyHost(context(Settings(mode="replay", arbitrage={"venues": ["binance"]})))
    assert host.wants("order_event") and host.wants("book") and host.wants("trade") and host.wants("policy")
    event = OrderEvent("someone-else-1", "binance", "BTC/USDT", "buy", "filled", 0)
    assert host.on_order_events([event]) == []  # not an order of a running cycle
