"""The online trainer: live bars equal file-built bars; a round records trials and promotes honestly,
single-market and portfolio (`trainer.portfolio`) alike."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as parquet
import pytest

from services.trainer.data import bars_from_trades
from services.trainer.evaluation import should_promote
from services.trainer.portfolio_training import portfolio_config_from, portfolio_data
from services.trainer.service import OnlineTrainer
from services.trainer.synth import lead_lag, make_market
from services.trainer.training import feature_options
from shared.bus import RedisBus
from shared.config import load_settings
from shared.rl.bars import NS_PER_S, Bars
from shared.rl.live_bars import LiveBars
from shared.rl.portfolio import observation_size
from shared.rl.weights import WEIGHTS_FILE, NumpyNet, encode_weights
from shared.schemas import PolicyUpdate, Trade, decode, streams
from shared.storage.policies import PolicyRegistry

from .test_trainer_data import DATA


def test_live_bars_equal_bars_from_trades() -> None:
    rows = parquet.read_table(DATA / "binance_BTCUSDT_trades_2021-01-08.parquet").to_pylist()
    ts = np.array([int(r["timestamp"].timestamp() * 1e6) * 1000 for r in rows], dtype=np.int64)
    price = np.array([r["price"] for r in rows])
    amount = np.array([r["quantity"] for r in rows])
    buy = np.array([r["buyer_maker"] == "False" for r in rows])
    live = LiveBars(bar_seconds=1.0, max_bars=10_000)
    for i in range(len(rows)):
        live.add(int(ts[i]), float(price[i]), float(amount[i]), bool(buy[i]))
    expected = bars_from_trades(ts, price, amount, buy, bar_seconds=1.0)
    got = live.bars()
    n = len(got)  # the last bar is still forming
    assert n == len(expected) - 1
    np.testing.assert_array_equal(got.ts, expected.ts[:n])
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(got, col), getattr(expected, col)[:n])
    np.testing.assert_allclose(got.volume, expected.volume[:n])
    np.testing.assert_allclose(got.imbalance, expected.imbalance[:n], atol=1e-12)  # type: ignore[arg-type]


def test_live_bars_window_is_bounded() -> None:
    live = LiveBars(bar_seconds=1.0, max_bars=50)
    for i in range(200):
        live.add(i * NS_PER_S, 100.0 + i, 1.0, True)
    assert len(live) == 50
    assert live.bars().close[-1] == 100.0 + 198


def _trades(uid: str, n_bars: int) -> list[Trade]:
    bars = make_market("mean_reverting", n_bars, seed=4).bars
    return [
        Trade(
            exchange=f"ex{uid}",
            symbol="SYN/USD",
            trade_id=str(i),
            price=float(p),
            amount=1.0,
            side="buy" if i % 2 else "sell",
            ts=int(t),
            recv_ts=int(t),
        )
        for i, (t, p) in enumerate(zip(bars.ts.tolist(), bars.close.tolist(), strict=True))
    ]


@pytest.mark.integration
@pytest.mark.slow
async def test_round_records_trials_and_promotes_only_a_winner(db: Any, redis: Any, uid: str, tmp_path: Path) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    settings = load_settings(
        trainer={
            "policy_dir": str(tmp_path),
            "bar_seconds": 60.0,
            "min_bars": 400,
            "window_bars": 1_000,
            "timesteps": 256,
            "algo": "ppo",
        }
    )
    registry = PolicyRegistry(db, RedisBus(redis, settings.bus))
    trainer = OnlineTrainer(settings, registry)
    trainer.on_trades(_trades(uid, 900))
    assert trainer.pick_market() == (f"ex{uid}", "SYN/USD")
    summary = await trainer.run_round()
    assert summary is not None and len(summary["trials"]) == 1
    rows = await db.fetch("SELECT * FROM policies WHERE id = $1", summary["trials"][0])
    assert rows[0]["exchange"] == f"ex{uid}"
    assert rows[0]["checkpoint_uri"].startswith(str(tmp_path))
    weights = Path(rows[0]["checkpoint_uri"]) / "actor.npz"  # exported by the round, its hash in the registry
    assert rows[0]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert '"timesteps": 256' in rows[0]["hyperparameters"]
    assert "sharpe" in rows[0]["metrics"]
    assert rows[0]["source"] == "online" and rows[0]["reason"] == summary["reason"]  # the verdict, recorded
    champion = await registry.champion(f"ex{uid}", "SYN/USD")
    if summary["promoted"]:
        assert champion is not None and champion["id"] == summary["promoted"]
    else:
        assert champion is None


@pytest.mark.integration
async def test_promotion_is_recorded_then_published(db: Any, redis: Any, uid: str) -> None:
    settings = load_settings()
    registry = PolicyRegistry(db, RedisBus(redis, settings.bus))
    pid = await registry.record_trial(
        "ppo", "/ckpt/x", {"sharpe": 2.0, "total_return": 0.1}, {"lr": 1e-4}, 0, 60 * NS_PER_S, f"ex{uid}", "A/B"
    )
    assert await registry.champion(f"ex{uid}", "A/B") is None
    assert await registry.trial_count(f"ex{uid}", "A/B") == 1
    await registry.promote(pid, "ppo", "/ckpt/x", {"sharpe": 2.0, "trades": 3}, f"ex{uid}", "A/B")
    champion = await registry.champion(f"ex{uid}", "A/B")
    assert champion is not None and champion["id"] == pid and champion["metrics"]["sharpe"] == 2.0
    entries = await redis.xrevrange(streams.POLICY_UPDATES, count=20)
    updates = [m for _, fields in entries for m in decode(fields.get(b"d") or fields.get("d"))]
    mine = [u for u in updates if isinstance(u, PolicyUpdate) and u.policy_id == pid]
    assert mine and mine[0].checkpoint_uri == "/ckpt/x" and mine[0].metrics["trades"] == 3.0


def _portfolio_markets(uid: str) -> list[tuple[str, str]]:
    return sorted([(f"spot{uid}", "SYN/USD"), (f"perp{uid}_futures", "SYN/USD")])


def _portfolio_trades(markets: list[tuple[str, str]], n_bars: int) -> list[Trade]:
    """One trade per bar per market at the bar's close, of two markets where the first leads by a bar."""
    synth = lead_lag(n_bars, seed=5, markets=markets)
    return [
        Trade(ex, sym, str(i), float(p), 1.0, "buy" if i % 2 else "sell", int(t), int(t))
        for (ex, sym), bars in zip(markets, synth.bars, strict=True)
        for i, (t, p) in enumerate(zip(bars.ts.tolist(), bars.close.tolist(), strict=True))
    ]


def constant_portfolio_policy(
    bars: list[Bars], markets: list[tuple[str, str]], algo: str, out_dir: Path, **kw: Any
) -> None:
    """Stands in for `train_portfolio` without Ray: writes a portfolio actor (as training exports it)
    that targets weight 0.5 in every market whatever it sees, over the round's own features."""
    config = kw["config"]
    data = portfolio_data(bars, markets, config, algo)
    n_obs, n = observation_size(data), len(markets)
    bias = np.array([0.5] * n + [-1.0] * n, dtype=np.float32)  # [means, log_stds]
    net = NumpyNet("mlp", {"actor": [(np.zeros((n_obs, 2 * n), np.float32), bias, None)]})
    meta = {
        "algo": algo,
        "markets": [{"exchange": e, "symbol": s} for e, s in markets],
        "bar_seconds": data.bar_seconds,
        "feature_names": list(data.names),
        "features": feature_options(config),
        "env": portfolio_config_from(config, algo).to_dict(),
    }
    out = Path(out_dir)
    out.mkdir(parents=True)
    (out / WEIGHTS_FILE).write_bytes(encode_weights(net, meta, n_obs, {"type": "box", "shape": [n]}))
    (out / "tradewind.json").write_text(json.dumps(meta))


def _metrics(row: Any) -> dict[str, Any]:
    value = row["metrics"]
    return dict(json.loads(value) if isinstance(value, str) else value)


def _portfolio_settings(tmp_path: Path, markets: list[tuple[str, str]], timesteps: int = 256) -> Any:
    return load_settings(
        trainer={
            "policy_dir": str(tmp_path),
            "bar_seconds": 60.0,
            "min_bars": 400,
            "window_bars": 1_000,
            "timesteps": timesteps,
            "algo": "ppo",
            "portfolio": [{"exchange": e, "symbol": s} for e, s in markets],
        }
    )


async def _published(redis: Any, policy_id: str) -> list[PolicyUpdate]:
    entries = await redis.xrevrange(streams.POLICY_UPDATES, count=50)
    updates = [m for _, fields in entries for m in decode(fields.get(b"d") or fields.get("d"))]
    return [u for u in updates if isinstance(u, PolicyUpdate) and u.policy_id == policy_id]


@pytest.mark.integration
async def test_a_portfolio_round_records_its_market_set_and_promotes_by_the_rule(
    db: Any, redis: Any, uid: str, tmp_path: Path
) -> None:
    markets = _portfolio_markets(uid)
    settings = _portfolio_settings(tmp_path, markets)
    registry = PolicyRegistry(db, RedisBus(redis, settings.bus))
    trainer = OnlineTrainer(settings, registry, isolate=False, portfolio_train_fn=constant_portfolio_policy)
    trades = _portfolio_trades(markets, 1_250)  # the second round needs a held-out tail of new bars
    trainer.on_trades([t for t in trades if int(t.trade_id) < 300])
    assert await trainer.run_round() is None  # too few bars yet: nothing trained, nothing recorded
    assert await registry.trial_count(markets=markets) == 0
    trainer.on_trades([t for t in trades if 300 <= int(t.trade_id) < 900])

    first = await trainer.run_round()
    assert first is not None and len(first["trials"]) == 1
    assert first["market"] == [list(m) for m in markets]
    row = (await db.fetch("SELECT * FROM policies WHERE id = $1", first["trials"][0]))[0]
    stored = json.loads(row["markets"]) if isinstance(row["markets"], str) else row["markets"]
    assert [(m["exchange"], m["symbol"]) for m in stored] == markets
    assert row["exchange"] is None and row["symbol"] is None  # a portfolio policy trades a market set
    assert row["source"] == "online" and row["reason"] == first["reason"]
    assert row["checkpoint_uri"].startswith(str(tmp_path))
    metrics = _metrics(row)
    assert set(metrics["baselines"]) >= {"buy_and_hold", "flat", "momentum", "best_single_market"}
    ok, why = should_promote(metrics, None, metrics["baselines"])  # no champion for this market set yet
    assert (first["promoted"] is not None) == ok and first["reason"] == why

    # the same policy again, now against a champion for the market set (promoted here by hand if the
    # round did not): it does not beat itself, so it must not be promoted whatever the baselines did
    if first["promoted"] is None:
        await registry.promote(row["id"], "ppo", row["checkpoint_uri"], metrics, markets=markets)
    assert len(await _published(redis, row["id"])) == 1
    assert (await _published(redis, row["id"]))[0].markets == markets
    trainer.on_trades([t for t in trades if int(t.trade_id) >= 900])  # a round judges bars no round judged yet
    second = await trainer.run_round()
    assert second is not None and len(second["trials"]) == 1
    row2 = (await db.fetch("SELECT * FROM policies WHERE id = $1", second["trials"][0]))[0]
    metrics2 = _metrics(row2)
    ok2, why2 = should_promote(metrics2, metrics2, metrics2["baselines"])  # the champion scores the same
    assert not ok2 and second["promoted"] is None and row2["reason"] == second["reason"] == why2
    champion = await registry.champion(markets=markets)
    assert champion is not None and champion["id"] == row["id"]
    assert await registry.trial_count(markets=markets) == 2


@pytest.mark.integration
@pytest.mark.slow
async def test_a_trained_portfolio_round_in_its_own_process(db: Any, redis: Any, uid: str, tmp_path: Path) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    markets = _portfolio_markets(uid)
    settings = _portfolio_settings(tmp_path, markets)
    registry = PolicyRegistry(db, RedisBus(redis, settings.bus))
    trainer = OnlineTrainer(settings, registry)  # the real train_portfolio, in a fresh process
    trainer.on_trades(_portfolio_trades(markets, 900))
    summary = await trainer.run_round()
    assert summary is not None and len(summary["trials"]) == 1
    row = (await db.fetch("SELECT * FROM policies WHERE id = $1", summary["trials"][0]))[0]
    weights = Path(row["checkpoint_uri"]) / "actor.npz"
    assert row["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert row["source"] == "online" and row["reason"] == summary["reason"]
    metrics = _metrics(row)
    ok, why = should_promote(metrics, None, metrics["baselines"])
    assert (summary["promoted"] is not None) == ok and summary["reason"] == why
    champion = await registry.champion(markets=markets)
    if ok:
        assert champion is not None and champion["id"] == summary["promoted"]
        assert (await _published(redis, summary["promoted"]))[0].markets == markets
    else:
        assert champion is None
