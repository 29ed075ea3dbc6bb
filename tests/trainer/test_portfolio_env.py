"""The portfolio env and backtest: shapes, per-venue costs, funding, no look-ahead, the `--data DIR` reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.trainer.data import DataError
from services.trainer.market_dir import load_market_dir
from services.trainer.portfolio_env import SECONDS_PER_YEAR, PortfolioEnv
from services.trainer.portfolio_eval import evaluate, simulate_weights
from services.trainer.synth import lead_lag, write_csv, write_market_dir
from shared.rl.bars import Bars
from shared.rl.costs import CostModel, FeeTier
from shared.rl.portfolio import PortfolioConfig, build_portfolio_data

MARKETS = [("coinbase", "BTC/USD"), ("binance_futures", "BTC/USDT"), ("binance", "ETH/USDT")]


def make(n: int = 800, seed: int = 0, funding: float = 0.0001, **config: object) -> tuple[PortfolioEnv, list[Bars]]:
    synth = lead_lag(n, seed, markets=MARKETS)
    data = build_portfolio_data(synth.bars, MARKETS, funding_rate_8h=funding)
    return PortfolioEnv(data, PortfolioConfig(**config)), synth.bars  # type: ignore[arg-type]


def test_spaces_and_observation_layout() -> None:
    env, _ = make()
    obs, _ = env.reset(seed=1)
    assert env.action_space.shape == (3,)
    assert obs.shape == env.observation_space.shape
    assert any(name.startswith("basis:coinbase:BTC/USD-binance_futures") for name in env.data.names)
    obs, _, _, _, info = env.step(np.array([1.0, -1.0, -1.0], np.float32))
    assert list(info["weights"]) == [1.0, -1.0, 0.0]  # spot without margin cannot short
    held = env.book.weights(env.t)  # measured from the base amounts held, after the bar's move
    np.testing.assert_allclose(obs[-6:-3], held, rtol=1e-6)
    np.testing.assert_allclose(held, [1.0, -1.0, 0.0], atol=0.05)
    assert env.book.qty[0] > 0 > env.book.qty[1] and env.book.qty[2] == 0.0
    discrete, _ = make(continuous=False)
    assert discrete.action_space.n == 27  # type: ignore[attr-defined]


def test_each_venue_pays_its_own_fees_and_funding() -> None:
    cheap = CostModel(tiers=(FeeTier(0.0, 0.0, 0.0),), half_spread=0.0, impact=0.0)
    dear = CostModel(tiers=(FeeTier(0.0, 0.01, 0.01),), half_spread=0.0, impact=0.0)
    env, _ = make(cost=cheap, venue_costs={"coinbase": dear}, funding=0.0)
    env.reset(options={"start": 200})
    eq0 = env.equity.copy()
    _, _, _, _, info = env.step(np.array([1.0, 1.0, 0.0], np.float32))
    assert info["cost"] == pytest.approx(0.01 * eq0[0])
    growth = env.data.close[201] / env.data.close[200]
    assert env.equity[0] == pytest.approx(eq0[0] * (growth[0] - 0.01))  # coinbase paid its fee from its own cash
    assert env.equity[1] == pytest.approx(eq0[1] * growth[1])
    assert env.equity[2] == pytest.approx(eq0[2])  # binance spot stayed in cash
    funded, _ = make(cost=cheap, funding=0.08)  # 0.08 per 8 h = 1e-2 per minute bar
    funded.reset(options={"start": 200})
    funded.step(np.array([0.0, 1.0, 0.0], np.float32))
    assert funded.equity[1] == pytest.approx(eq0[1] * (growth[1] - 0.08 / 480))


def test_a_spot_short_pays_borrow_interest_on_what_it_owes() -> None:
    cheap = CostModel(tiers=(FeeTier(0.0, 0.0, 0.0),), half_spread=0.0, impact=0.0)
    per_bar = 1e-3  # of the short's value, per one-minute bar
    rate = per_bar * SECONDS_PER_YEAR / 60
    equities = {}
    for name, annual in (("free", 0.0), ("charged", rate)):
        env, _ = make(cost=cheap, funding=0.0, spot_margin=True, borrow_rate_annual=annual)
        env.reset(options={"start": 200})
        env.step(np.array([0.0, 0.0, -1.0], np.float32))  # short ETH on binance spot (margin allowed)
        owed = -env.book.qty[2] * env.data.close[200, 2]
        assert owed > 0
        equities[name] = env.equity[2]
    assert equities["free"] - equities["charged"] == pytest.approx(per_bar * owed)
    long_only, _ = make(cost=cheap, funding=0.0, borrow_rate_annual=rate)
    long_only.reset(options={"start": 200})
    eq0 = long_only.equity.copy()
    long_only.step(np.array([0.0, 0.0, 1.0], np.float32))  # a long owes nothing
    assert long_only.equity[2] == pytest.approx(eq0[2] * long_only.data.close[201, 2] / long_only.data.close[200, 2])


def test_no_look_ahead_in_features_and_rewards() -> None:
    synth = lead_lag(900, 3, markets=MARKETS)
    full = build_portfolio_data(synth.bars, MARKETS)
    cut = build_portfolio_data([b.slice(0, 600) for b in synth.bars], MARKETS)
    np.testing.assert_array_equal(full.features[:600], cut.features)
    changed = [Bars(b.ts, b.open, b.high, b.low, b.close.copy(), b.volume) for b in synth.bars]
    changed[0].close[700:] *= 1.5  # the future of the leader changes...
    again = build_portfolio_data(changed, MARKETS)
    np.testing.assert_array_equal(again.features[:700], full.features[:700])  # ...the past features do not
    env_a, env_b = PortfolioEnv(full), PortfolioEnv(again)
    for env in (env_a, env_b):
        env.reset(options={"start": 650})
    for _ in range(49):  # rewards up to bar 699 -> 699 use closes <= 699 only
        a = env_a.step(np.array([0.5, 0.5, 0.5], np.float32))
        b = env_b.step(np.array([0.5, 0.5, 0.5], np.float32))
        assert a[1] == b[1]


def test_backtest_matches_the_env(tmp_path: Path) -> None:
    env, _ = make()
    config = env.config
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (100, 3))
    env.reset(options={"start": 300})
    weights = []
    for a in actions:
        weights.append(env.step(a.astype(np.float32))[4]["weights"])
    result, _ = simulate_weights(env.data, np.array(weights), 300, config)
    assert result.equity[-1] == pytest.approx(env.equity.sum())


def test_market_dir_reads_and_rejects_misaligned(tmp_path: Path) -> None:
    synth = lead_lag(600, 0)
    write_market_dir(synth, str(tmp_path))
    markets, bars = load_market_dir(tmp_path)
    assert markets == [("binance_futures", "BTC/USDT"), ("coinbase", "BTC/USD")]
    report = evaluate("baseline:buy_and_hold", build_portfolio_data(bars, markets), 200, 599, PortfolioConfig())
    assert set(report["baselines"]) == {"buy_and_hold", "flat", "momentum", "best_single_market"}
    assert report["sharpe"] == report["baselines"]["buy_and_hold"]["sharpe"]
    write_csv(synth.bars[0].slice(1, 600), str(tmp_path / "coinbase__BTC-USD.csv"))
    with pytest.raises(DataError, match="misaligned"):
        load_market_dir(tmp_path)
    (tmp_path / "nonsense.csv").write_text("x")
    with pytest.raises(DataError, match="expected a name like"):
        load_market_dir(tmp_path)


def test_train_refuses_folds_for_a_market_dir(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from services.trainer.cli import train

    write_market_dir(lead_lag(300, 0), str(tmp_path))
    env = {"TRADEWIND_TRAINER__POLICY_DIR": str(tmp_path / "policies")}
    result = CliRunner().invoke(train, ["--algo", "ppo", "--data", str(tmp_path), "--folds", "3"], env=env)
    assert result.exit_code == 2, result.output
    assert "--folds 3: walk-forward trains single-market policies only" in result.output
    assert "portfolio_walkforward run DIR --folds K" in result.output
    assert not (tmp_path / "policies").exists()  # refused before anything was trained or written
