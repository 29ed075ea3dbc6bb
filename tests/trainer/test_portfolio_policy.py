"""The executor's contract: a portfolio policy loaded from `actor.npz` alone decides target weights per market."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.trainer.synth import lead_lag
from shared.rl.policy import PolicyError
from shared.rl.portfolio import (
    NotEnoughBars,
    PortfolioConfig,
    action_to_weights,
    build_portfolio_data,
    load_portfolio_policy,
    observation_size,
    read_markets,
)
from shared.rl.weights import WEIGHTS_FILE, NumpyNet, encode_weights, load_weights_policy

MARKETS = [("binance", "BTC/USDT"), ("binance_futures", "BTC/USDT")]


def write_policy(tmp_path: Path, continuous: bool = True) -> tuple[Path, NumpyNet]:
    synth = lead_lag(600, seed=1, markets=MARKETS)
    config = PortfolioConfig(continuous=continuous)
    data = build_portfolio_data(synth.bars, MARKETS, lags=config.lags)
    n_obs = observation_size(data)
    rng = np.random.default_rng(0)
    outputs = 2 * len(MARKETS) if continuous else len(config.levels) ** len(MARKETS)
    net = NumpyNet(
        "mlp",
        {
            "actor": [
                (rng.normal(0, 0.3, (n_obs, 8)).astype(np.float32), np.zeros(8, np.float32), "tanh"),
                (rng.normal(0, 0.3, (8, outputs)).astype(np.float32), np.zeros(outputs, np.float32), None),
            ]
        },
    )
    meta = {
        "algo": "ppo",
        "markets": [{"exchange": e, "symbol": s} for e, s in MARKETS],
        "bar_seconds": data.bar_seconds,
        "feature_names": list(data.names),
        "features": {"time_features": "day"},
        "env": config.to_dict(),
    }
    out = tmp_path / "pol"
    out.mkdir()
    (out / WEIGHTS_FILE).write_bytes(encode_weights(net, meta, n_obs, {"type": "box", "shape": [2]}))
    (out / "tradewind.json").write_text(json.dumps(meta))
    return out, net


def test_decide_returns_a_weight_per_market_within_venue_limits(tmp_path: Path) -> None:
    out, _ = write_policy(tmp_path)
    policy = load_portfolio_policy(out, tmp_path)
    assert policy.markets == MARKETS
    assert policy.bar_seconds == 60.0
    synth = lead_lag(600, seed=1, markets=MARKETS)
    bars = dict(zip(MARKETS, synth.bars, strict=True))
    decision = policy.decide(bars)
    assert set(decision) == set(MARKETS)
    assert decision[MARKETS[0]] >= 0.0  # spot without margin: long-only
    assert all(-1.0 <= w <= 1.0 for w in decision.values())
    assert read_markets(out / "tradewind.json") == MARKETS
    with pytest.raises(NotEnoughBars):
        policy.decide({m: b.slice(0, 10) for m, b in bars.items()})
    with pytest.raises(PolicyError):
        load_weights_policy(out, tmp_path)  # the single-market loader refuses it, naming the right one


def test_decide_uses_only_the_bars_up_to_the_last(tmp_path: Path) -> None:
    out, _ = write_policy(tmp_path)
    synth = lead_lag(600, seed=1, markets=MARKETS)
    a = load_portfolio_policy(out, tmp_path).decide(
        {m: b.slice(0, 400) for m, b in zip(MARKETS, synth.bars, strict=True)}
    )
    b = load_portfolio_policy(out, tmp_path).decide(
        {m: b.slice(0, 400) for m, b in zip(MARKETS, synth.bars, strict=True)}
    )
    assert a == b


def test_joint_discrete_action_maps_digits_to_levels() -> None:
    config = PortfolioConfig(continuous=False, levels=(-1.0, 0.0, 1.0))
    markets = [("binance_futures", "BTC/USDT"), ("okx_futures", "ETH/USDT")]
    assert list(action_to_weights(0, markets, config)) == [-1.0, -1.0]
    assert list(action_to_weights(2 + 3 * 1, markets, config)) == [1.0, 0.0]
    spot = [("binance", "BTC/USDT"), ("binance", "ETH/USDT")]
    w = action_to_weights(np.array([1.0, 1.0]), spot, PortfolioConfig())
    assert list(w) == [0.5, 0.5]  # one venue's gross weight stays within its equity
    assert list(action_to_weights(np.array([-1.0, 0.3]), spot, PortfolioConfig())) == [0.0, 0.3]
