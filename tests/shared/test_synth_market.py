"""The market of `--mode synth` is one where a promotion means something was learned: on held-out
windows like the online trainer's, buy-and-hold, momentum and a random policy all fail its promotion
rule, while a plain dip-buying rule (what a policy has to learn) passes it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.trainer.evaluation import should_promote, walk_forward
from services.trainer.policy import Baseline
from shared.config import Settings
from shared.rl.bars import NS_PER_S, Bars
from shared.rl.env_config import EnvConfig
from shared.rl.features import MarketData, compute_features
from shared.synth_market import START_PRICE, SynthParams, log_prices, prices

SEEDS = range(1, 21)
SPOT = EnvConfig(allow_short=False)  # default costs: 0.1% taker fee, 1 bp half spread, as the trainer charges


def held_out_market(seed: int, n: int) -> MarketData:
    """`n` bars of the seed's market from an arbitrary point of its path, as the trainer builds them."""
    path = prices(4_000, SynthParams(seed=seed))
    close = path[(seed * 997) % (4_000 - n) :][:n]
    open_ = np.r_[close[0], close[:-1]]
    ts = (1_700_000_000 * NS_PER_S + np.arange(n) * NS_PER_S // 4).astype(np.int64)
    bars = Bars(ts=ts, open=open_, high=np.maximum(open_, close), low=np.minimum(open_, close), close=close,
                volume=np.full(n, 10_000.0))  # fmt: skip
    return compute_features(bars, time_features="none")


def _random(seed: int) -> Baseline:
    return Baseline("random", lambda m, a, b, c: np.random.default_rng(seed).integers(0, 2, b - a).astype(float))


def _dip_buyer(market: MarketData, start: int, stop: int, config: EnvConfig) -> np.ndarray:
    """Long after the price falls 1.5 std under its 20-bar EMA, flat once it is back above it."""
    log_close = pd.Series(np.log(market.close))
    gap = log_close - log_close.ewm(span=20).mean()
    z = (gap / gap.rolling(50, min_periods=5).std()).to_numpy()
    out, held = np.zeros(stop - start), 0.0
    for i, t in enumerate(range(start, stop)):
        held = 1.0 if z[t] < -1.5 else 0.0 if z[t] > 0 else held
        out[i] = held
    return out


@pytest.mark.parametrize("n", [400, 1200])
def test_baselines_fail_the_promotion_rule_and_dip_buying_passes(n):
    passed = {"buy_and_hold": 0, "momentum": 0, "random": 0, "dip_buyer": 0}
    for seed in SEEDS:
        market = held_out_market(seed, n)
        start = int(n * 0.75)  # the trainer's 25% held out
        for name, policy in (("random", _random(seed)), ("dip_buyer", Baseline("dip_buyer", _dip_buyer))):
            report = walk_forward(policy, market, SPOT, start=start, windows=2)
            passed[name] += should_promote(report, None, report["baselines"])[0]
        for name in ("buy_and_hold", "momentum"):  # each judged as a candidate against the others
            others = {k: v for k, v in report["baselines"].items() if k != name}
            passed[name] += should_promote(report["baselines"][name], None, others)[0]
    assert passed["buy_and_hold"] <= 1 and passed["momentum"] == 0 and passed["random"] == 0, passed
    assert passed["dip_buyer"] >= 19, passed


def test_the_path_reverts_to_a_falling_mean():
    params = SynthParams(seed=3)
    x = log_prices(20_000, params)
    z = x + params.drift * np.arange(len(x))
    stationary = params.sigma / np.sqrt(2 * params.theta - params.theta**2)
    assert abs(np.std(z) / stationary - 1) < 0.05
    assert np.corrcoef(z[:-1], z[1:])[0, 1] == pytest.approx(1 - params.theta, abs=0.02)
    assert prices(1, params)[0] == START_PRICE and x[-1] < -1.5  # 20,000 steps: the mean fell by 2


def test_synth_mode_points_every_service_at_the_synth_venue_unless_told_otherwise():
    settings = Settings(mode="synth", trainer={"interval_s": 300.0})
    assert settings.trainer.venues == ["synth"] and settings.trainer.symbol == "SYN/USDT"
    assert settings.trainer.bar_seconds == 0.25 and settings.trainer.bar_clock == "exchange"
    assert not settings.trainer.allow_short
    assert settings.trainer.interval_s == 300.0  # set explicitly: kept
    assert settings.executor.market_data_venues == ["synth"] and settings.executor.rl_enabled
    assert settings.executor.initial_balances == {"synth": {"USDT": 10_000.0}}
    assert settings.risk.market_data_venues == ["synth"]
    replay = Settings(mode="replay")
    assert replay.trainer.venues is None and replay.executor.rl_enabled is None
