"""The online trainer: live bars equal file-built bars; a round records trials and promotes honestly."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as parquet
import pytest

from services.trainer.data import bars_from_trades
from services.trainer.service import OnlineTrainer
from services.trainer.synth import make_market
from shared.bus import RedisBus
from shared.config import load_settings
from shared.rl.bars import NS_PER_S
from shared.rl.live_bars import LiveBars
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
