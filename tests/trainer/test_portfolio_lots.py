"""Lot rules in the portfolio env and backtest: orders rounded down to the lot step, none below the minimum
quantity or notional, holdings only ever on the lot grid, fees on what was traded."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from services.trainer.portfolio_env import PortfolioEnv
from services.trainer.portfolio_eval import simulate_weights
from services.trainer.portfolio_training import portfolio_config_from
from services.trainer.synth import lead_lag
from services.trainer.training import load_config
from shared.paper.rules import SymbolRules
from shared.rl.costs import CostModel, FeeTier
from shared.rl.lots import LotRule
from shared.rl.portfolio import PortfolioConfig, build_portfolio_data

MARKETS = [("coinbase", "BTC/USD"), ("binance_futures", "BTC/USDT"), ("binance", "ETH/USDT")]
FEE = CostModel(tiers=(FeeTier(0.0, 0.001, 0.001),), half_spread=0.0, impact=0.0)
START = 200


def env_with(lots: dict[str, LotRule]) -> PortfolioEnv:
    data = build_portfolio_data(lead_lag(800, 0, markets=MARKETS).bars, MARKETS, funding_rate_8h=0.0)
    env = PortfolioEnv(data, PortfolioConfig(cost=FEE, lots=lots))
    env.reset(options={"start": START})
    return env


def test_a_lot_rule_rounds_towards_zero_and_drops_what_is_below_its_minimums() -> None:
    rule = LotRule(step=0.01, min_qty=0.01, min_notional=10.0)
    assert rule.order(0.0037, 30_000.0) == 0.0  # 0.37 of a lot: no order
    assert rule.order(0.0237, 30_000.0) == 0.02 and rule.order(-0.0237, 30_000.0) == -0.02
    assert rule.order(0.02, 400.0) == 0.0  # 2 lots, but 8 quote < the 10 minimum notional
    assert LotRule(step=0.001).order(0.3, 1.0) == 0.3  # 0.3 / 0.001 is 299.99...: a float step is not lost
    assert LotRule().order(0.123456789, 1.0) == 0.123456789  # no rules: any amount
    odd = LotRule(step=0.5, min_qty=0.2)  # steps count from the minimum quantity, as Binance's LOT_SIZE
    assert odd.order(1.1, 1.0) == 0.7
    rules = SymbolRules("BTC/USDT", "BTC", "USDT", step_size=Decimal("0.00001"), min_qty=Decimal("0.00001"))
    paper = LotRule.from_symbol_rules(replace_notional(rules, Decimal("5")))
    assert paper == LotRule(step=0.00001, min_qty=0.00001, min_notional=5.0)
    amount = paper.order(0.123456789, 60_000.0)
    assert amount == 0.12345 and rules.check(None, Decimal(str(amount)), Decimal(60_000)) is None
    with pytest.raises(ValueError, match="unknown keys"):
        LotRule.from_dict({"stepSize": 1})


def replace_notional(rules: SymbolRules, notional: Decimal) -> SymbolRules:
    from dataclasses import replace

    return replace(rules, min_notional=notional)


def test_a_target_below_one_lot_trades_nothing_and_above_trades_whole_lots() -> None:
    env = env_with({})
    price = env.data.close[START]
    lot = 0.1 * 10_000.0 / price[0] / 0.37  # a lot size that makes 10% of coinbase's 10k 0.37 lots
    lots = {"coinbase:BTC/USD": LotRule(step=lot, min_qty=lot)}
    env = env_with(lots)
    _, _, _, _, info = env.step(np.array([0.1, 0.0, 0.0], np.float32))  # wants 0.37 lots
    assert info["qty"][0] == 0.0 and info["cost"] == 0.0 and info["traded"][0] == 0.0
    assert env.equity[0] == pytest.approx(10_000.0)
    env = env_with(lots)
    _, _, _, _, info = env.step(np.array([0.64, 0.0, 0.0], np.float32))  # wants 2.368 lots: buys 2
    bought = env.config.lot_for(MARKETS[0]).round_down(2 * lot)
    assert info["qty"][0] == pytest.approx(bought) and bought < 0.64 * 10_000.0 / price[0]
    assert info["cost"] == pytest.approx(0.001 * bought * price[0])  # the fee on what was traded
    after = env.data.close[START + 1, 0]
    assert env.equity[0] == pytest.approx(10_000.0 - bought * price[0] * 1.001 + bought * after)


def test_the_minimum_notional_blocks_a_tiny_rebalance() -> None:
    lots = {"binance:ETH/USDT": LotRule(step=0.0001, min_notional=50.0)}
    env = env_with(lots)
    env.step(np.array([0.0, 0.0, 0.5], np.float32))
    held = env.book.qty[2]
    assert held > 0
    # about 5 quote more, plus the bar's drift of the weight: below 50
    _, _, _, _, info = env.step(np.array([0.0, 0.0, 0.5005], np.float32))
    assert env.book.qty[2] == held and info["cost"] == 0.0
    _, _, _, _, info = env.step(np.array([0.0, 0.0, 0.56], np.float32))  # about 600 quote more: traded
    assert env.book.qty[2] > held and info["cost"] > 0.0
    without = env_with({})
    without.step(np.array([0.0, 0.0, 0.5], np.float32))
    _, _, _, _, info = without.step(np.array([0.0, 0.0, 0.5005], np.float32))
    assert info["cost"] > 0.0  # the same rebalance without the rule is traded


def test_holdings_stay_on_the_lot_grid_and_the_backtest_replays_the_env() -> None:
    lots = {
        "coinbase:BTC/USD": LotRule(step=0.5, min_qty=0.5, min_notional=100.0),
        "binance_futures:BTC/USDT": LotRule(step=0.25, min_qty=0.25),
        "binance:ETH/USDT": LotRule(step=1.0, min_qty=1.0),
    }
    env = env_with(lots)
    rng = np.random.default_rng(1)
    targets = []
    for a in rng.uniform(-1, 1, (150, 3)):
        info = env.step(a.astype(np.float32))[4]
        targets.append(info["weights"])
        steps = info["qty"] / np.array([0.5, 0.25, 1.0])
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)
    result, traded = simulate_weights(env.data, np.array(targets), START, env.config)
    assert result.equity[-1] == pytest.approx(env.equity.sum())
    assert np.count_nonzero(traded) < np.count_nonzero(np.diff(np.array(targets), axis=0))  # some were blocked


def test_lots_come_from_the_training_config_and_travel_in_the_metadata() -> None:
    config = load_config(
        "ppo", overrides=('portfolio.lots={"binance:BTC/USDT" = {step = 0.001, min_qty = 0.001, min_notional = 5}}',)
    )
    pcfg = portfolio_config_from(config, "ppo")
    assert pcfg.lot_for(("binance", "BTC/USDT")) == LotRule(0.001, 0.001, 5.0)
    assert pcfg.lot_for(("binance_futures", "BTC/USDT")) == LotRule()
    assert PortfolioConfig.from_dict(pcfg.to_dict()) == pcfg


def test_order_legs_cover_a_short_before_buying_spot_and_sell_spot_before_shorting() -> None:
    from shared.rl.lots import FUNDING_MARGIN, NO_LOTS, order_legs

    # +3 with 1 short: cover 1 on cross margin, then buy spot as far as 101 quote pays at 50
    legs = order_legs(3.0, -1.0, 50.0, 101.0, NO_LOTS)
    assert legs == [("buy", 1.0, "cross"), ("buy", pytest.approx(101.0 / (50.0 * FUNDING_MARGIN)), None)]
    assert order_legs(3.0, -1.0, 50.0, None, NO_LOTS) == [("buy", 1.0, "cross"), ("buy", 2.0, None)]
    # -3 holding 1: sell the 1 held, short 2 on cross margin; nothing to do gives no leg
    assert order_legs(-3.0, 1.0, 50.0, None, NO_LOTS) == [("sell", 1.0, None), ("sell", 2.0, "cross")]
    assert order_legs(0.0, 1.0, 50.0, None, NO_LOTS) == []
