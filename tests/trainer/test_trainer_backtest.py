"""Backtests: the vectorised engine agrees with the env step by step, baselines computed independently."""

from __future__ import annotations

import numpy as np
import pytest

from services.trainer.backtest import metrics, simulate
from services.trainer.data import load_bars
from services.trainer.env import TradingEnv
from services.trainer.evaluation import should_promote, walk_forward
from services.trainer.policy import BASELINES, MOMENTUM_LOOKBACK
from services.trainer.synth import make_market
from shared.rl.costs import CostModel, FeeTier
from shared.rl.env_config import EnvConfig
from shared.rl.features import compute_features

from .test_trainer_data import DATA

COST = CostModel(tiers=(FeeTier(0.0, 0.001, 0.0015),), half_spread=0.0002, impact=0.2)
BARS = load_bars(DATA / "btc-perp-20211231_1m_head3000.csv.gz")
MARKET = compute_features(BARS)


def test_buy_and_hold_equals_one_trade() -> None:
    start, stop = 200, 2_999
    cfg = EnvConfig(cost=COST)
    result = simulate(MARKET, BASELINES["buy_and_hold"].positions(MARKET, start, stop, cfg), start, COST)
    v0 = 10_000.0
    fee = v0 * (0.0015 + 0.0002 + min(0.2 * v0 / (BARS.close[start] * BARS.volume[start]), 0.005))
    expected = (v0 - fee) * BARS.close[stop] / BARS.close[start]
    assert result.equity[-1] == pytest.approx(expected, rel=1e-9)
    m = metrics(result)
    assert m["trades"] == 1 and m["turnover"] == 1.0 and m["exposure"] == 1.0
    assert m["fees"] == pytest.approx(fee)
    closes = BARS.close[start : stop + 1]
    assert m["max_drawdown"] == pytest.approx(
        max(1 - c / closes[: i + 1].max() for i, c in enumerate(closes)), rel=1e-6
    )


def test_flat_earns_nothing() -> None:
    result = simulate(MARKET, np.zeros(500), 100, COST)
    assert metrics(result)["total_return"] == 0.0
    assert metrics(result)["trades"] == 0


@pytest.mark.parametrize("allow_short", [True, False])
def test_momentum_backtest_equals_env_rollout(allow_short: bool) -> None:
    start, stop = 300, 2_500
    cfg = EnvConfig(cost=COST, allow_short=allow_short, episode_len=10_000, reward_scale=1.0)
    positions = BASELINES["momentum"].positions(MARKET, start, stop, cfg)
    # the rule, written out independently
    for i, t in enumerate(range(start, stop)):
        change = BARS.close[t] - BARS.close[t - MOMENTUM_LOOKBACK]
        want = 1.0 if change > 0 else (0.0 if change == 0 or not allow_short else -1.0)
        assert positions[i] == want
    env = TradingEnv(MARKET, cfg)
    env.reset(options={"start": start})
    levels = cfg.position_levels
    equity = [10_000.0]
    for p in positions:
        _, _, _, _, info = env.step(levels.index(p))
        equity.append(info["equity"])
    result = simulate(MARKET, positions, start, COST)
    np.testing.assert_allclose(result.equity, equity, rtol=1e-9)
    assert metrics(result)["trades"] == int(np.count_nonzero(np.diff(positions, prepend=0.0)))


def test_walk_forward_reports_policy_and_baselines() -> None:
    cfg = EnvConfig(cost=COST)
    report = walk_forward(BASELINES["momentum"], MARKET, cfg, windows=3)
    for key in ("total_return", "sharpe", "sortino", "max_drawdown", "turnover", "trades", "fees", "deflated_sharpe"):
        assert key in report and key in report["baselines"]["buy_and_hold"]
    assert len(report["windows"]) == 3
    chained = np.prod([1 + w["total_return"] for w in report["windows"]]) - 1
    assert chained == pytest.approx(report["total_return"], rel=1e-9, abs=1e-12)


def test_oracle_beats_baselines_on_synthetic_market() -> None:
    synth = make_market("regime_momentum", 6_000, seed=5)
    market = compute_features(synth.bars)
    start, stop = 4_000, 5_999
    oracle = metrics(simulate(market, synth.oracle_positions[start:stop], start, CostModel()))
    hold = metrics(simulate(market, np.ones(stop - start), start, CostModel()))
    assert oracle["sharpe"] > 5 * max(hold["sharpe"], 1.0)


def test_promotion_needs_champion_and_baselines_beaten() -> None:
    base = {"buy_and_hold": {"sharpe": 1.0}, "flat": {"sharpe": 0.0}, "momentum": {"sharpe": 0.5}}
    assert should_promote({"sharpe": 2.0, "total_return": 0.1}, {"sharpe": 1.5}, base)[0]
    assert not should_promote({"sharpe": 2.0, "total_return": 0.1}, {"sharpe": 2.5}, base)[0]
    assert not should_promote({"sharpe": 0.9, "total_return": 0.1}, None, base)[0]
    assert not should_promote({"sharpe": 2.0, "total_return": -0.1}, None, base)[0]
