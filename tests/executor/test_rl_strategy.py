"""The executor's RL strategy against the trainer's own backtest, under a hot-swap, and end to end.

One tiny real PPO checkpoint is trained once (synthetic candles, a few hundred env steps); the
strategy is then fed real Binance BTC/USDT trades (tests/data/trainer) as `Trade` messages.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as parquet
import pytest
from click.testing import CliRunner

from services.executor.gateway import PaperGateway
from services.executor.service import Executor
from services.executor.store import ExecutorStore
from services.executor.strategies.rl import RLStrategy
from services.trainer.data import bars_from_trades
from services.trainer.policy_cli import policy as policy_cli
from services.trainer.synth import make_market
from services.trainer.training import load_config, train
from shared.bus import connect_redis
from shared.config import Settings
from shared.paper import PaperExchange
from shared.paper.recorded import read_binance_capture
from shared.rl.features import WARMUP, compute_features
from shared.rl.policy import CheckpointPolicy, numpy_forward
from shared.rl.weights import WEIGHTS_FILE, file_sha256, load_weights_policy, with_sha
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, PolicyUpdate, Trade, decode, encode, streams
from shared.sections.executor import ExecutorSettings
from shared.storage import Database

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent.parent / "data"
TRADES = DATA / "trainer" / "binance_BTCUSDT_trades_2021-01-08.parquet"
CAPTURE = DATA / "executor" / "binance_btcusdt_20240809_20s.gz"
BAR_SECONDS = 0.1  # ~460 bars from the 46 s of recorded trades
TINY_PPO = (
    "training.train_batch_size_per_learner=256",
    "training.minibatch_size=64",
    "training.num_epochs=2",
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    out = tmp_path_factory.mktemp("rl") / "ppo"
    try:
        bars = make_market("regime_momentum", 1_000, seed=5).bars
        train(bars, "ppo", out, timesteps=256, seed=1, config=load_config("ppo", None, TINY_PPO))
    finally:
        ray.shutdown()
    yield out


def recorded_trades(scale: float = 1.0) -> list[Trade]:
    rows = parquet.read_table(TRADES).to_pylist()
    out = []
    for r in rows:
        ts = int(r["timestamp"].timestamp() * 1e6) * 1000
        side = "sell" if r["buyer_maker"] == "True" else "buy"
        out.append(
            Trade("binance", "BTC/USDT", str(r["trade_id"]), r["price"] * scale, r["quantity"], side, ts, ts)  # type: ignore[arg-type]
        )
    return out


def rl_settings(**extra: object) -> ExecutorSettings:
    return ExecutorSettings(rl_bar_seconds=BAR_SECONDS, rl_allow_short=True, rl_min_order=0.0, **extra)  # type: ignore[arg-type]


def registered(checkpoint: Path) -> str:
    """The reference the registry publishes for a promoted checkpoint: its directory and weights' sha256."""
    return with_sha(str(checkpoint), file_sha256(checkpoint / WEIGHTS_FILE))


async def test_decisions_equal_the_trainers_backtest(checkpoint: Path) -> None:
    strategy = RLStrategy(rl_settings(policy_dir=str(checkpoint.parent)), run_id="t")
    assert await strategy.load(registered(checkpoint), "p1", "binance", "BTC/USDT")
    trades = recorded_trades()
    intents: list[OrderIntent] = []
    for trade in trades:
        sent = strategy.on_trade(trade)
        for i in sent:  # each order fills before the next trade (a market waits for its order's report)
            strategy.on_order_event(
                OrderEvent(i.client_order_id, i.exchange, i.symbol, i.side, "filled", trade.ts, filled=i.amount)
            )
        intents += sent

    # independently: bars from the whole trade list at once, features as the trainer computes them
    ts = np.array([t.ts for t in trades], dtype=np.int64)
    bars = bars_from_trades(
        ts,
        np.array([t.price for t in trades]),
        np.array([t.amount for t in trades]),
        np.array([t.side == "buy" for t in trades]),
        bar_seconds=BAR_SECONDS,
    )
    policy = CheckpointPolicy.load(checkpoint)
    assert "imbalance" not in policy.meta["feature_names"]  # trained on candles: the strategy drops it
    market = compute_features(replace(bars, imbalance=None), **policy.feature_options)
    closed = len(market) - 1  # the last bar is still forming in the strategy
    expected = policy.positions(market, WARMUP, closed)
    got = [level for _, _, _, level in strategy.decisions]
    assert [bar_ts for _, bar_ts, _, _ in strategy.decisions] == market.ts[WARMUP:closed].tolist()
    np.testing.assert_array_equal(got, expected)

    # orders only when the level changes (as in the env), to level x notional at that bar's close
    changes = [WARMUP + i for i in range(len(expected)) if expected[i] != (expected[i - 1] if i else 0.0)]
    held = sum(i.amount if i.side == "buy" else -i.amount for i in intents)
    target = expected[-1] * strategy.cfg.rl_notional / market.close[changes[-1]] if changes else 0.0
    assert held == pytest.approx(target, rel=1e-5, abs=1e-9)
    assert changes and intents  # the policy does trade on these bars: the check above has teeth
    assert all(i.strategy == "rl" and i.order_type == "market" for i in intents)


def test_numpy_actor_equals_forward_inference(checkpoint: Path) -> None:
    """The backtest's numpy actor gives forward_inference's logits (to float32 rounding) and actions."""
    import torch

    policy = CheckpointPolicy.load(checkpoint)
    assert policy.actor is not None  # PPO: the fast path is the one in use
    obs = np.random.default_rng(3).normal(size=(5_000, len(policy.meta["feature_names"]) + 2)).astype(np.float32)
    with torch.inference_mode():
        logits = policy.module.forward_inference({"obs": torch.from_numpy(obs)})["action_dist_inputs"].numpy()
    np.testing.assert_allclose(numpy_forward(policy.actor, obs), logits, atol=1e-5)
    np.testing.assert_array_equal(policy.act(obs), logits.argmax(axis=-1))


async def test_hot_swap_drops_no_tick(checkpoint: Path) -> None:
    """The new policy loads in a thread (slowed here); ticks meanwhile go to the old one."""

    def slow_loader(uri: str) -> CheckpointPolicy:
        deadline = time.monotonic() + 30  # a second load is held until the old policy has decided some bars
        while strategy.active is not None and len(strategy.decisions) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        return load_weights_policy(uri, checkpoint.parent, require_sha=True)

    strategy = RLStrategy(rl_settings(), run_id="t", loader=slow_loader)
    assert await strategy.load(registered(checkpoint), "old", "binance", "BTC/USDT")
    trades = recorded_trades()
    fed = 0
    swap = asyncio.create_task(strategy.load(registered(checkpoint), "new", "binance", "BTC/USDT"))
    while not swap.done():
        strategy.on_trade(trades[fed])
        fed += 1
        await asyncio.sleep(0.0005)
    assert swap.result() is True
    during = fed
    for trade in trades[fed : fed + 600]:
        strategy.on_trade(trade)
        fed += 1
    assert strategy.active is not None and strategy.active.policy_id == "new"
    assert (
        strategy.ticks == strategy.active.bars[("binance", "BTC/USDT")].trades == fed
    )  # every tick reached the bars, none twice
    names = [name for name, _, _, _ in strategy.decisions]
    assert "old" in names and "new" in names, (during, len(names))
    assert names == sorted(names, key=lambda n: n == "new")  # old decisions, then only new ones
    bar_ts = [t for _, t, _, _ in strategy.decisions]
    assert bar_ts == sorted(set(bar_ts))  # one decision per bar across the swap


@pytest.mark.integration
async def test_promote_hot_loads_and_trades_on_paper(checkpoint: Path, isolated: tuple[str, str]) -> None:
    """`policy promote` → policies row + PolicyUpdate → the executor loads it → rl intents fill on paper."""
    dsn, rurl = isolated
    redis = connect_redis(rurl)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    settings = Settings(
        mode="replay",
        trainer={"policy_dir": str(checkpoint.parent)},
        bus={"block_ms": 50, "claim_idle_ms": 1000, "claim_interval_ms": 200},
        executor={
            "strategy_enabled": False,
            "market_data_venues": ["binance"],
            "rl_bar_seconds": BAR_SECONDS,
            "rl_notional": 500.0,
        },
    )
    exchange = PaperExchange(settings.executor.venues, seed=1, id_prefix="R-")
    executor = Executor(settings, redis, db, PaperGateway(exchange), run_id="rl")
    task = asyncio.create_task(executor.run())
    try:
        await asyncio.wait_for(executor.ready.wait(), 20)
        rl = executor.strategies.by_name.get("rl")
        assert isinstance(rl, RLStrategy) and rl.active is None  # idle: nothing promoted yet
        snap = next(m for m in read_binance_capture(CAPTURE) if isinstance(m, BookUpdate))
        await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(snap)})
        deadline = time.monotonic() + 20
        while exchange.book("binance", "BTC/USDT").mid() is None:
            assert time.monotonic() < deadline, "the executor never applied the book snapshot"
            await asyncio.sleep(0.01)

        result = await asyncio.to_thread(  # the command runs its own event loop
            CliRunner().invoke,
            policy_cli,
            ["promote", str(checkpoint), "--exchange", "binance", "--symbol", "BTC/USDT", "--json"],
            env={"DATABASE_URL": dsn, "REDIS_URL": rurl, "TRADEWIND_TRAINER__POLICY_DIR": str(checkpoint.parent)},
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        rows = await db.fetch("SELECT id, promoted_at, metrics->>'promotion' AS how, weights_sha256 FROM policies")
        assert len(rows) == 1 and rows[0]["promoted_at"] is not None and rows[0]["how"] == "manual"
        assert rows[0]["weights_sha256"] == file_sha256(checkpoint / WEIGHTS_FILE)  # recorded at promotion
        (_, fields), *_ = await redis.xrange(streams.POLICY_UPDATES)
        (update,) = decode(fields[streams.FIELD.encode()])
        assert isinstance(update, PolicyUpdate) and update.policy_id == rows[0]["id"]
        assert update.checkpoint_uri == registered(checkpoint)  # the executor checks the weights against it
        deadline = time.monotonic() + 20
        while rl.active is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert rl.active is not None and rl.active.policy_id == rows[0]["id"]

        # the recorded trades, priced at the book's level so the paper fills are sensible
        scale = float(snap.bids[0][0]) / recorded_trades()[0].price
        pipe = redis.pipeline(transaction=False)
        for trade in recorded_trades(scale):
            pipe.xadd(streams.md_trades("binance"), {streams.FIELD: encode(trade)})
        await pipe.execute()

        trades = recorded_trades(scale)
        deadline = time.monotonic() + 30
        while rl.ticks < len(trades) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert rl.ticks == len(trades)
        longs = [level for _, _, _, level in rl.decisions if level > 0]
        assert longs, "the policy never went long on these bars: no order to check"
        intents = []
        for _, fields in await redis.xrange(streams.ORDERS_INTENTS):
            intents += [m for m in decode(fields[streams.FIELD.encode()]) if isinstance(m, OrderIntent)]
        rl_ids = {i.client_order_id for i in intents if i.strategy == "rl"}
        assert rl_ids
        deadline = time.monotonic() + 15
        filled: set[str] = set()
        outcomes: dict[str, list[tuple[str, str]]] = {}
        while not rl_ids <= filled and time.monotonic() < deadline:
            outcomes = {}
            for _, fields in await redis.xrange(streams.ORDERS_EVENTS):
                for m in decode(fields[streams.FIELD.encode()]):
                    if isinstance(m, OrderEvent):
                        outcomes.setdefault(m.client_order_id, []).append((m.status, m.reason))
            filled = {cid for cid, seen in outcomes.items() if any(status == "filled" for status, _ in seen)}
            await asyncio.sleep(0.1)
        assert rl_ids <= filled, {cid: outcomes.get(cid) for cid in rl_ids - filled}
        # what a restarted executor would seed its holdings with: the same as the strategy's own book
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stored = await ExecutorStore(db).held_by_strategy("rl")
            if stored.get(("binance", "BTC/USDT"), 0.0) == pytest.approx(rl.held[("binance", "BTC/USDT")]):
                break
            await asyncio.sleep(0.1)
        assert stored.get(("binance", "BTC/USDT"), 0.0) == pytest.approx(rl.held[("binance", "BTC/USDT")])
    finally:
        executor.stop()
        await asyncio.wait_for(task, 20)
        await db.close()
        await redis.aclose()
