"""The RL strategy sizes a portfolio policy's orders by the lot rules it was trained with, as the env does:
rounded down to the lot step, none below the minimum quantity or notional, none the venue's filters
(``shared.paper.rules.SymbolRules.check``, what the paper exchange rejects by) would refuse; perpetuals
short by default, spot does not."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from services.executor.strategies.rl import RLStrategy
from shared.paper.rules import SymbolRules
from shared.rl.lots import LotRule
from shared.rl.portfolio import PortfolioConfig
from shared.schemas import OrderEvent, OrderIntent, PolicyUpdate
from tests.executor.test_rl_book import MARKETS, PERP, SPOT, book_strategy, feed, trades, write_constant_policy

WARMED = 110  # bars: past the policy's warm-up (99 bars), so it decides
STEP = Decimal("0.001")
VENUE_RULES = {
    SPOT: SymbolRules("BTC/USDT", "BTC", "USDT", step_size=STEP, min_qty=STEP, min_notional=Decimal(10)),
    PERP: SymbolRules("BTC/USDT", "BTC", "USDT", step_size=STEP, min_qty=STEP, min_notional=Decimal(100)),
}
CONFIG = PortfolioConfig(lots={f"{ex}:{sym}": LotRule.from_symbol_rules(r) for (ex, sym), r in VENUE_RULES.items()})


def fill(strategy: RLStrategy, intents: list[OrderIntent]) -> None:
    for i in intents:
        event = OrderEvent(i.client_order_id, i.exchange, i.symbol, i.side, "filled", 1, filled=i.amount)
        strategy.on_order_event(event)


def assert_venue_accepts(strategy: RLStrategy, intents: list[OrderIntent]) -> None:
    for i in intents:
        price = Decimal(str(strategy.prices[(i.exchange, i.symbol)]))
        assert VENUE_RULES[(i.exchange, i.symbol)].check(None, Decimal(str(i.amount)), price) is None, i


async def test_portfolio_orders_keep_the_lot_rules_and_perpetuals_short(tmp_path: Path) -> None:
    strategy = book_strategy(tmp_path)
    assert not strategy.cfg.rl_allow_short  # the default: spot long-only, perpetuals short natively
    assert await strategy.start() == []  # no store: nothing to restore, updates are taken at once
    uri = write_constant_policy(tmp_path, "p", MARKETS, [0.5, -0.25], CONFIG)
    assert await strategy.load(uri, "p", markets=MARKETS)
    intents = feed(strategy, trades(WARMED))
    by_market = {(i.exchange, i.symbol): i for i in intents}
    assert len(intents) == 2 and set(by_market) == {SPOT, PERP}
    spot, perp = by_market[SPOT], by_market[PERP]
    assert (spot.side, spot.margin_mode) == ("buy", None) and spot.amount == 0.016  # 500 / ~30000 = 0.0166..
    assert (perp.side, perp.margin_mode) == ("sell", "cross") and perp.amount == 0.008  # 250 / ~30010
    assert_venue_accepts(strategy, intents)
    fill(strategy, intents)
    assert strategy.held == {SPOT: 0.016, PERP: -0.008}

    # +0.5% of the spot venue's capital is 0.00017 BTC, below one lot; the perp's 0.003 BTC short more is
    # about 90 quote, below its 100 minimum notional: no order at all
    tiny = write_constant_policy(tmp_path, "q", MARKETS, [0.505, -0.34], CONFIG)
    await strategy.on_policy(PolicyUpdate("q", "ppo", tiny, 2, markets=MARKETS))
    assert feed(strategy, trades(2, start_bar=WARMED)) == []

    # a real change trades whole lots only, each leg (cover, then spot) on the step
    flip = write_constant_policy(tmp_path, "r", MARKETS, [0.1, 0.3], CONFIG)
    await strategy.on_policy(PolicyUpdate("r", "ppo", flip, 3, markets=MARKETS))
    again = feed(strategy, trades(2, start_bar=WARMED + 2))
    assert {(i.exchange, i.side, i.margin_mode) for i in again} == {
        ("binance", "sell", None),
        ("binance_futures", "buy", "cross"),
        ("binance_futures", "buy", None),
    }
    assert_venue_accepts(strategy, again)
    fill(strategy, again)
    # spot: 0.1 x 1000 / ~30000 = 0.0033 wanted, 0.0127 sold -> 0.012; perp: 0.01 - 0.008 = 0.018 wanted -> 0.017
    assert strategy.held == {SPOT: pytest.approx(0.004), PERP: pytest.approx(0.009)}


async def test_spot_stays_long_only_unless_margin_is_allowed(tmp_path: Path) -> None:
    strategy = book_strategy(tmp_path)
    assert not strategy.may_short(SPOT) and strategy.may_short(PERP)
    single = write_constant_policy(tmp_path, "s", [SPOT], [-0.5], PortfolioConfig(spot_margin=True))
    assert await strategy.load(single, "s", markets=[SPOT])
    assert feed(strategy, trades(WARMED)) == []  # the policy may short spot, the executor's settings do not
    allowed = RLStrategy(strategy.cfg.model_copy(update={"rl_allow_short": True}), "u", lambda venue, asset: 10_000.0)
    assert allowed.may_short(SPOT)
    assert await allowed.load(single, "s", markets=[SPOT])
    (short,) = feed(allowed, trades(WARMED))
    assert (short.side, short.margin_mode) == ("sell", "cross")
