"""`tradewind tune`: Ray Tune trials over [tune] of the algorithm's config, judged on the validation
split, every trial in the policies registry, the best exported and backtested like a trained policy."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg
import pytest

from services.trainer.training import load_config
from services.trainer.tune import search_space, with_sample
from shared.cli_support import InputError

DATA = Path(__file__).resolve().parents[1] / "data" / "trainer" / "btc-perp-20211231_1m_head3000.csv.gz"
TINY = ("--timesteps", "256", "--set", "training.train_batch_size_per_learner=256")
TINY += ("--set", "training.minibatch_size=64", "--set", "training.num_epochs=1")


@pytest.mark.parametrize("algo", ["ppo", "dqn", "appo"])
def test_every_algorithm_keeps_a_search_space_in_its_config(algo: str) -> None:
    space = search_space(load_config(algo))
    assert {"training.lr", "model.fcnet_hiddens"} <= set(space)
    if algo == "dqn":
        assert "training.n_step" in space


def test_a_sample_sets_its_keys_and_leaves_the_config_alone() -> None:
    config = load_config("ppo")
    tuned = with_sample(config, {"training.lr": 1e-4, "model.fcnet_hiddens": [32, 32]})
    assert tuned["training"]["lr"] == 1e-4 and tuned["model"]["fcnet_hiddens"] == [32, 32]
    assert config["training"]["lr"] == 0.0003


@pytest.mark.parametrize(
    ("tune", "found"),
    [
        ({"lr": {"uniform": [0, 1]}}, "section.key"),
        ({"training.lr": {"normal": [0, 1]}}, "expected one of"),
        ({"training.lr": {"uniform": [0, 1], "choice": [1]}}, "section.key"),
        ({}, "at least one"),
    ],
)
def test_a_bad_search_space_names_the_key(tune: dict[str, object], found: str) -> None:
    with pytest.raises(InputError, match=found):
        search_space({**load_config("ppo"), "tune": tune})


def _policies(url: str) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch("SELECT checkpoint_uri, source, reason, metrics FROM policies ORDER BY created_at")
        finally:
            await conn.close()

    return asyncio.run(fetch())


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a 2-core CI machine under load: minutes
def test_tune_records_every_trial_and_exports_the_best(isolated: tuple[str, str]) -> None:
    database_url, _ = isolated
    with tempfile.TemporaryDirectory(prefix="tw-tune-", dir="/tmp") as name:
        tmp = Path(name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(DATABASE_URL=database_url, RAY_TMPDIR=str(tmp), TRADEWIND_VAR_DIR=str(tmp / "var"))
        env.update(RAY_USAGE_STATS_ENABLED="0", TRADEWIND_TRAINER__POLICY_DIR=str(tmp))  # backtest loads under it
        best = tmp / "best"
        cmd = [sys.executable, "-m", "shared", "tune", "--algo", "ppo", "--data", str(DATA), "--samples", "2"]
        cmd += [*TINY, "--out", str(best), "--json"]
        done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout)
        assert report["recorded"] == 2 and len(report["trials"]) == 2
        sharpes = [t["validation_sharpe"] for t in report["trials"]]
        assert report["best_validation_sharpe"] == max(sharpes)
        assert len({json.dumps(t["sample"], sort_keys=True) for t in report["trials"]}) == 2  # two samples drawn

        rows = _policies(database_url)
        assert sorted(r["checkpoint_uri"] for r in rows) == sorted(t["checkpoint"] for t in report["trials"])
        assert {r["source"] for r in rows} == {"tune"}
        assert sum("exported" in r["reason"] for r in rows) == 1

        meta = json.loads((best / "tradewind.json").read_text())
        assert meta["selection"]["among_tune_trials"] == 2
        backtest = [sys.executable, "-m", "shared", "backtest", "--data", str(DATA), "--policy", str(best), "--json"]
        shown = subprocess.run(backtest, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
        assert shown.returncode == 0, shown.stderr[-3000:]
        result = json.loads(shown.stdout)
        assert result["trials"] == 2  # the registry's count: the deflated Sharpe discounts both trials
        assert result["from_ts"] > meta["validation_to_ns"]  # chosen on validation: judged after it


def test_tune_without_a_registry_fails_before_training(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "DATABASE_URL"}
    env.update(TRADEWIND_VAR_DIR=str(tmp_path / "var"))
    cmd = [sys.executable, "-m", "shared", "tune", "--algo", "ppo", "--data", str(DATA), "--samples", "2"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "DATABASE_URL" in done.stderr and done.stdout == ""
    assert not (tmp_path / "var").exists() or not any((tmp_path / "var").rglob("*.trials"))
