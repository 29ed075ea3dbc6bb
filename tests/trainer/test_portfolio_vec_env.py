"""The vectorised portfolio env steps exactly as N single `PortfolioEnv`s: observations, rewards, lot rules."""

from __future__ import annotations

import numpy as np
import pytest

from services.trainer.portfolio_env import PortfolioEnv
from services.trainer.portfolio_vec_env import PortfolioVecEnv
from services.trainer.synth import lead_lag
from shared.rl.lots import LotRule
from shared.rl.portfolio import PortfolioConfig, build_portfolio_data

MARKETS = [("coinbase", "BTC/USD"), ("binance_futures", "BTC/USDT"), ("binance", "ETH/USDT")]
LOTS = {
    "coinbase:BTC/USD": LotRule(step=0.5, min_qty=0.5, min_notional=100.0),
    "binance_futures:BTC/USDT": LotRule(step=0.25, min_qty=0.25),
}


@pytest.mark.parametrize("continuous", [True, False])
def test_vec_env_equals_single_envs(continuous: bool) -> None:
    data = build_portfolio_data(lead_lag(900, 2, markets=MARKETS).bars, MARKETS)
    config = PortfolioConfig(continuous=continuous, lots=LOTS, episode_len=300, spot_margin=continuous)
    starts = np.array([200, 250, 300, 350])
    vec = PortfolioVecEnv(data, config, num_envs=len(starts), seed=0)
    obs = vec.reset(starts)
    singles = [PortfolioEnv(data, config) for _ in starts]
    for i, (env, s) in enumerate(zip(singles, starts, strict=True)):
        np.testing.assert_allclose(obs[i], env.reset(options={"start": int(s)})[0], rtol=1e-6)
    rng = np.random.default_rng(3)
    traded = 0
    for _ in range(120):
        actions = rng.uniform(-1, 1, (len(starts), 3)) if continuous else rng.integers(0, 27, len(starts))
        vo, vr, vt, vtr = vec.step(actions)
        for i, env in enumerate(singles):
            so, sr, st, s_tr, info = env.step(actions[i])
            np.testing.assert_allclose(vo[i], so, rtol=1e-6, atol=1e-9)
            assert vr[i] == pytest.approx(sr, rel=1e-9, abs=1e-12) and (vt[i], vtr[i]) == (st, s_tr)
            np.testing.assert_allclose(vec.qty[i], info["qty"], rtol=1e-12)
            traded += int(np.count_nonzero(info["traded"]))
    assert traded > 0
    steps = vec.qty[:, :2] / np.array([0.5, 0.25])
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)  # on the lot grid
