"""APPO trains a portfolio policy through `tradewind train --data DIR` as PPO does: one policy, target weights
for every market, judged against the baselines, loadable by the executor from `actor.npz` alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from services.trainer.synth import lead_lag, write_market_dir
from shared.rl.portfolio import load_portfolio_policy

pytestmark = pytest.mark.slow


def test_appo_trains_a_portfolio_policy_the_executor_loads(tmp_path: Path) -> None:
    synth = lead_lag(600, 0)
    data = tmp_path / "markets"
    data.mkdir()
    write_market_dir(synth, str(data))
    # Short and under /tmp: Ray's unix sockets live below it and their paths are length-limited.
    with tempfile.TemporaryDirectory(prefix="tw-ray-", dir="/tmp") as ray_tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TRADEWIND_"))}
        env.update(RAY_TMPDIR=ray_tmp, RAY_USAGE_STATS_ENABLED="0", TRADEWIND_VAR_DIR=str(tmp_path / "var"))
        cmd = [sys.executable, "-m", "shared", "train", "--algo", "appo", "--data", str(data)]
        cmd += ["--out", str(tmp_path / "appo"), "--timesteps", "1000"]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    markets = [("binance_futures", "BTC/USDT"), ("coinbase", "BTC/USD")]
    assert (result["algo"], result["markets"]) == ("appo", [f"{e}:{s}" for e, s in markets])
    assert result["timesteps"] >= 1000
    for split in ("validation", "test"):  # judged out of sample against every baseline, after costs
        assert result[split]["bars"] > 0 and result[split]["markets"] == result["markets"]
        assert set(result[split]["baselines"]) == {"buy_and_hold", "flat", "momentum", "best_single_market"}

    policy = load_portfolio_policy(tmp_path / "appo", tmp_path)  # what the executor loads: actor.npz, no Ray
    assert policy.markets == markets
    weights = policy.decide(dict(zip(markets, synth.bars, strict=True)))
    assert set(weights) == set(markets) and all(-1.0 <= w <= 1.0 for w in weights.values())
    assert weights[("coinbase", "BTC/USD")] >= 0.0  # spot without margin: long-only
