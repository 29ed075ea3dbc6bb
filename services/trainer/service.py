"""The online trainer: bars from `md:trades:*`, periodic train / evaluate / promote rounds.

Each round takes the rolling window of the busiest market (or the configured one), holds out
its most recent part, trains a challenger and fine-tunes the champion on the rest, evaluates
everything on the held-out bars beside the baselines, records every trial in `policies`, and
promotes only a policy that beats the champion and the baselines there (then publishes
`policy:updates`). Training runs in a worker thread, so consuming never stalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.trainer.data import Bars, DataError, load_bars_from_db
from services.trainer.evaluation import PolicyRegistry, should_promote, walk_forward
from services.trainer.features import compute_features
from services.trainer.live_bars import LiveBars
from services.trainer.policy import CheckpointPolicy
from services.trainer.training import Split, TrainingError, feature_options, load_config, train
from shared.bus import Consumer, Delivery, RedisBus, connect_redis
from shared.config import Settings
from shared.runtime import on_stop
from shared.schemas import Trade, streams
from shared.storage import Database

log = logging.getLogger(__name__)

TrainFn = Callable[..., Any]


@dataclass
class Trial:
    checkpoint: Path
    policy: CheckpointPolicy
    report: dict[str, Any]
    hyperparameters: dict[str, Any]


class OnlineTrainer:
    """Keeps bars per market and runs training rounds; `train_fn` is injectable for tests."""

    def __init__(self, settings: Settings, registry: PolicyRegistry, train_fn: TrainFn = train) -> None:
        self.settings = settings
        self.cfg = settings.trainer
        self.registry = registry
        self.train_fn = train_fn
        self.markets: dict[tuple[str, str], LiveBars] = {}
        self.rounds = 0

    def on_trades(self, trades: list[Trade]) -> None:
        for t in trades:
            key = (t.exchange, t.symbol)
            bars = self.markets.get(key)
            if bars is None:
                bars = self.markets[key] = LiveBars(self.cfg.bar_seconds, self.cfg.window_bars)
            bars.add(t.recv_ts if self.cfg.bar_clock == "receive" else t.ts, t.price, t.amount, t.side == "buy")

    def pick_market(self) -> tuple[str, str] | None:
        """The configured market, or the one with the most bars."""
        if self.cfg.symbol is not None:
            keys = [k for k in self.markets if k[1] == self.cfg.symbol]
            return max(keys, key=lambda k: len(self.markets[k]), default=None)
        return max(self.markets, key=lambda k: len(self.markets[k]), default=None)

    async def run_round(self) -> dict[str, Any] | None:
        """One train / evaluate / promote round on the chosen market; None when there is too little data."""
        key = self.pick_market()
        if key is None or len(self.markets[key]) < self.cfg.min_bars:
            return None
        bars = self.markets[key].bars()
        champion = await self.registry.champion(*key)
        try:
            trials = await asyncio.to_thread(self._train_and_evaluate, bars, champion)
        except (TrainingError, DataError, ValueError) as exc:
            log.warning("trainer: round on %s/%s skipped: %s", *key, exc)
            return None
        self.rounds += 1
        return await self._decide(key, bars, trials, champion)

    def _train_and_evaluate(self, bars: Bars, champion: dict[str, Any] | None) -> list[Trial]:
        holdout = self.cfg.holdout_fraction
        overrides = (
            f"split.train={1 - holdout}",
            f"split.validation={holdout / 2}",
            f"env.allow_short={str(self.cfg.allow_short).lower()}",
        )
        config = load_config(self.cfg.algo, None, overrides)
        market = compute_features(bars, **feature_options(config))
        split = Split.by_fractions(len(market), 1 - holdout, holdout / 2)
        root = Path(self.cfg.policy_dir).resolve()
        runs: list[tuple[str, Path | None]] = [(self.cfg.algo, None)]
        if champion is not None and champion["algo"] == self.cfg.algo and Path(champion["checkpoint_uri"]).is_dir():
            runs.append((self.cfg.algo, Path(champion["checkpoint_uri"])))  # fine-tune the champion
        trials = []
        for algo, parent in runs:
            out = root / f"{algo}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
            try:
                self.train_fn(
                    bars,
                    algo,
                    out,
                    timesteps=self.cfg.timesteps,
                    seed=self.rounds,
                    gpus=self.cfg.gpus,
                    config=config,
                    data_label="md:trades",
                    init_from=parent,
                )
                policy = CheckpointPolicy.load(out)
            except (TrainingError, DataError, ValueError) as exc:
                log.warning("trainer: %s run%s failed: %s", algo, " (fine-tune)" if parent else "", exc)
                continue
            report = walk_forward(policy, market, policy.env_config, start=split.train_end, windows=2)
            hyper = {
                "algo": algo,
                "timesteps": self.cfg.timesteps,
                "fine_tuned_from": str(parent) if parent else None,
                **config.get("training", {}),
            }
            trials.append(Trial(out, policy, report, hyper))
        if champion is not None and Path(champion["checkpoint_uri"]).is_dir():
            try:  # the champion itself, on the same held-out bars
                current = CheckpointPolicy.load(champion["checkpoint_uri"])
                champion["holdout"] = walk_forward(
                    current, market, current.env_config, start=split.train_end, windows=2
                )
            except (ValueError, OSError) as exc:
                log.warning("trainer: champion %s cannot be evaluated: %s", champion["id"], exc)
        return trials

    async def _decide(
        self, key: tuple[str, str], bars: Bars, trials: list[Trial], champion: dict[str, Any] | None
    ) -> dict[str, Any]:
        recorded = []
        for trial in trials:
            metrics = {k: v for k, v in trial.report.items() if not k.startswith("_") and k != "windows"}
            policy_id = await self.registry.record_trial(
                trial.policy.meta["algo"],
                str(trial.checkpoint),
                metrics,
                trial.hyperparameters,
                int(bars.ts[0]),
                int(bars.ts[-1]),
                *key,
            )
            recorded.append((policy_id, trial, metrics))
        summary: dict[str, Any] = {
            "market": list(key),
            "bars": len(bars),
            "trials": [r[0] for r in recorded],
            "promoted": None,
        }
        if not recorded:
            return summary
        best_id, best, best_metrics = max(recorded, key=lambda r: r[2]["sharpe"])
        champion_holdout = champion.get("holdout") if champion else None
        ok, why = should_promote(best_metrics, champion_holdout, best.report["baselines"])
        log.info(
            "trainer: round %d on %s/%s: best %s sharpe %.3f: %s",
            self.rounds,
            *key,
            best_id,
            best_metrics["sharpe"],
            "PROMOTED, " + why if ok else "kept champion: " + why,
        )
        if ok:
            await self.registry.promote(best_id, best.policy.meta["algo"], str(best.checkpoint), best_metrics, *key)
            summary["promoted"] = best_id
        summary["reason"] = why
        return summary


async def _seed_from_db(trainer: OnlineTrainer, db: Database, exchanges: list[str]) -> None:
    """Start from the recorded trades of the configured market, when there are any."""
    symbol = trainer.cfg.symbol
    if symbol is None:
        return
    for exchange in exchanges:
        try:
            bars = await load_bars_from_db(db, exchange, symbol, trainer.cfg.bar_seconds)
        except DataError:
            continue
        live = trainer.markets[(exchange, symbol)] = LiveBars(trainer.cfg.bar_seconds, trainer.cfg.window_bars)
        live.extend(bars.slice(max(0, len(bars) - trainer.cfg.window_bars), len(bars)))
        log.info("trainer: %d bars of %s %s from the trades table", len(live), exchange, symbol)


async def main(settings: Settings) -> None:
    redis_url = settings.redis_url
    db_url = settings.database_url.get_secret_value() if settings.database_url else None
    if not redis_url or not db_url:
        raise SystemExit("trainer: REDIS_URL and DATABASE_URL must be set (`tradewind up` sets both)")
    redis = connect_redis(redis_url)
    db = await Database.connect(db_url, settings.storage)
    await db.migrate()
    trainer = OnlineTrainer(settings, PolicyRegistry(db, RedisBus(redis, settings.bus)))
    exchanges = settings.trainer.venues or [n for n, v in settings.ingest.venues.items() if v.enabled]

    async def handle(deliveries: list[Delivery]) -> None:
        trainer.on_trades([m for d in deliveries for m in d.messages if isinstance(m, Trade)])

    consumer = Consumer(
        redis,
        [streams.md_trades(e) for e in exchanges],
        settings.trainer.group,
        handle,
        settings.bus,
        name=f"trainer-{uuid.uuid4().hex[:6]}",
    )
    stopping = asyncio.Event()

    def stop() -> None:
        consumer.stop()
        stopping.set()

    on_stop(stop)
    await _seed_from_db(trainer, db, exchanges)
    consuming = asyncio.create_task(consumer.run())
    log.info(
        "trainer: consuming %s; a round every %.0fs once %d bars are in",
        exchanges,
        settings.trainer.interval_s,
        settings.trainer.min_bars,
    )
    try:
        next_round = time.monotonic() + settings.trainer.first_round_s
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), max(0.0, next_round - time.monotonic()))
            if stopping.is_set():
                break
            summary = await trainer.run_round()
            next_round = time.monotonic() + (settings.trainer.interval_s if summary else settings.trainer.first_round_s)
    finally:
        stop()
        await consuming
        await db.close()
        await redis.aclose()
