"""The online trainer: bars from `md:trades:*`, periodic train / evaluate / promote rounds.

Each round takes the rolling window of the busiest market (or the configured one), holds out
its most recent part, trains a challenger and fine-tunes the champion on the rest, evaluates
everything on the held-out bars beside the baselines, records every trial in `policies`, and
promotes only a policy that beats the champion and the baselines there (then publishes
`policy:updates`); every round's verdict is published there too (`PolicyVerdict`). A round judges
only bars no earlier round judged (it waits until its held-out tail is all new), and a looped
sample's repeated trades never become bars (`services.trainer.loops`). With `trainer.portfolio`
set, a round instead trains ONE portfolio policy over those markets' time-aligned bars and judges
it the same way against the champion of that market set and the portfolio baselines. Training
runs in a separate process, so consuming never stalls and Ray never lives in the service process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from services.trainer.data import DataError, load_bars_from_db
from services.trainer.errors import TrainingError
from services.trainer.evaluation import should_promote
from services.trainer.loops import LoopGuard
from services.trainer.market_dir import align_bars
from services.trainer.portfolio_training import train_portfolio
from services.trainer.rounds import TrainFn, Trial, train_and_evaluate, train_and_evaluate_portfolio
from services.trainer.training import train
from services.trainer.verdicts import trial_metrics, verdict
from shared.bus import Consumer, Delivery
from shared.config import Settings
from shared.rl.bars import Bars
from shared.rl.live_bars import LiveBars
from shared.rl.portfolio import Market
from shared.runtime import ServiceContext, ServiceTasks, service_context
from shared.schemas import Trade, streams
from shared.storage import Database
from shared.storage.policies import PolicyRegistry

log = logging.getLogger(__name__)


class OnlineTrainer:
    """Keeps bars per market and runs training rounds.

    With `isolate` (the default) each round's training runs in a fresh spawned process: Ray and
    torch never live in the service process (its signals, memory and event loop stay its own).
    `train_fn` and `portfolio_train_fn` are injectable (module-level functions, so they can cross
    to that process).
    """

    def __init__(
        self,
        settings: Settings,
        registry: PolicyRegistry,
        train_fn: TrainFn = train,
        isolate: bool = True,
        portfolio_train_fn: TrainFn = train_portfolio,
    ) -> None:
        self.settings = settings
        self.cfg = settings.trainer
        self.registry = registry
        self.train_fn = train_fn
        self.portfolio_train_fn = portfolio_train_fn
        self.isolate = isolate
        self.markets: dict[tuple[str, str], LiveBars] = {}
        self.rounds = 0
        self.loops = LoopGuard(self.cfg.loop_tolerance_s)
        self.judged: dict[tuple[Market, ...], tuple[int, list[str]]] = {}  # last bar judged, the trials then
        self.refused: set[tuple[Market, ...]] = set()  # market sets whose refusal was logged and recorded

    def on_trades(self, trades: list[Trade]) -> None:
        for t in trades:
            key = (t.exchange, t.symbol)
            if not self.loops.admit(key, t.ts):
                continue  # a looped sample's repeat: never a new bar
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

    async def _train(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in a fresh spawned process (or a thread without `isolate`)."""
        if self.isolate:
            with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
                return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        return await asyncio.to_thread(fn, *args)

    async def run_round(self) -> dict[str, Any] | None:
        """One train / evaluate / promote round on the chosen market (or the configured portfolio);
        None when there is too little data."""
        if self.cfg.portfolio:
            return await self.run_portfolio_round()
        key = self.pick_market()
        if key is None or len(self.markets[key]) < self.cfg.min_bars:
            have = 0 if key is None else len(self.markets[key])
            log.info("trainer: waiting for bars: %d of %d (%.3gs bars)", have, self.cfg.min_bars, self.cfg.bar_seconds)
            return None
        bars = self.markets[key].bars()
        if not await self._fresh([key], bars):
            return None
        champion = await self.registry.champion(*key)
        venue = self.settings.executor.venues.get(key[0])
        args = (self.cfg, bars, champion, self.rounds, self.train_fn, venue.taker_fee if venue else None)
        try:
            trials, champion_report = await self._train(train_and_evaluate, *args)
        except (TrainingError, DataError, ValueError, BrokenProcessPool) as exc:
            log.warning("trainer: round on %s/%s skipped: %s", *key, exc)
            return None
        self.rounds += 1
        return await self._decide([key], bars, trials, champion, champion_report)

    async def run_portfolio_round(self) -> dict[str, Any] | None:
        """One round over `trainer.portfolio`: aligned bars of every market, one portfolio policy,
        judged against the champion of that market set and the portfolio baselines."""
        markets: list[Market] = sorted({(m.exchange, m.symbol) for m in self.cfg.portfolio})  # the action order
        have = {m: len(self.markets[m]) if m in self.markets else 0 for m in markets}
        if min(have.values()) < self.cfg.min_bars:
            log.info("trainer: waiting for portfolio bars: %s of %d", have, self.cfg.min_bars)
            return None
        try:
            bars = align_bars(markets, [self.markets[m].bars() for m in markets])
        except DataError as exc:
            log.warning("trainer: portfolio round skipped: %s", exc)
            return None
        if len(bars[0]) < self.cfg.min_bars:
            log.info("trainer: waiting for portfolio bars: %d aligned of %d", len(bars[0]), self.cfg.min_bars)
            return None
        if not await self._fresh(markets, bars[0]):
            return None
        champion = await self.registry.champion(markets=markets)
        fees = [v.taker_fee for v in (self.settings.executor.venues.get(ex) for ex, _ in markets) if v]
        args = (self.cfg, markets, bars, champion, self.rounds, self.portfolio_train_fn, max(fees, default=None))
        try:
            trials, champion_report = await self._train(train_and_evaluate_portfolio, *args)
        except (TrainingError, DataError, ValueError, BrokenProcessPool) as exc:
            log.warning("trainer: portfolio round on %s skipped: %s", markets, exc)
            return None
        self.rounds += 1
        return await self._decide(markets, bars[0], trials, champion, champion_report)

    async def _fresh(self, markets: list[Market], bars: Bars) -> bool:
        """Whether the window's held-out tail holds only bars the last round on these markets did not judge
        (held-out windows of successive rounds never overlap: a walk forward). While new bars are too few
        for that, the round waits. When no more will come (no new bar, or a sample that looped: its markets
        take no new bars), the round is refused: logged once, and recorded on the last round's trials, so
        `tradewind policy list` shows why no round followed."""
        key = tuple(markets)
        last = self.judged.get(key)
        # the held-out tail starts here or later (feature warm-up bars only move it later)
        holdout_start = int(bars.ts[int(len(bars) * (1 - self.cfg.holdout_fraction))])
        if last is None or holdout_start > last[0]:
            self.refused.discard(key)
            return True
        new = int(np.count_nonzero(bars.ts > last[0]))
        loops = self.loops.notes(markets)
        if new and not loops:
            log.info(
                "trainer: %s: %d bars since the last round judged; its held-out tail would reach back into them",
                ", ".join(f"{e}/{s}" for e, s in markets),
                new,
            )
            return False
        if key not in self.refused:  # no new bar, or a looped sample's few: none will come
            self.refused.add(key)
            first = (
                f"the {new} bars after this round are too few for a held-out tail of their own"
                if new
                else "no new bars after this round"
            )
            why = "; ".join([f"{first}: no later round judges its bars again", *loops])
            log.warning("trainer: %s: %s", ", ".join(f"{e}/{s}" for e, s in markets), why)
            await self.registry.note(last[1], why)
        return False

    async def _decide(
        self,
        markets: list[Market],
        bars: Bars,
        trials: list[Trial],
        champion: dict[str, Any] | None,
        champion_report: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Record every trial of the round (beside the champion's figures on the same held-out bars), then
        promote its best only when `should_promote` holds; publish the round's verdict."""
        label = ", ".join(f"{e}/{s}" for e, s in markets)
        notes = self.loops.notes(markets)
        recorded = []
        for trial in trials:
            metrics = trial_metrics(trial.report, champion, champion_report, notes)
            policy_id = await self.registry.record_trial(
                trial.algo,
                trial.checkpoint,
                metrics,
                trial.hyperparameters,
                int(bars.ts[0]),
                int(bars.ts[-1]),
                markets=markets,
            )
            recorded.append((policy_id, trial, metrics))
        summary: dict[str, Any] = {
            "market": list(markets[0]) if len(markets) == 1 else [list(m) for m in markets],
            "bars": len(bars),
            "trials": [r[0] for r in recorded],
            "promoted": None,
        }
        self.judged[tuple(markets)] = (int(bars.ts[-1]), [r[0] for r in recorded])
        if not recorded:
            summary["reason"] = "no trial: every training run of the round failed"
            await self.registry.announce(verdict(self.rounds, markets, [], None, False, summary["reason"], notes))
            return summary
        best_id, best, best_metrics = max(recorded, key=lambda r: r[2]["sharpe"])
        ok, why = should_promote(best_metrics, champion_report, best.report["baselines"])
        log.info(
            "trainer: round %d on %s: best %s sharpe %.3f: %s",
            self.rounds,
            label,
            best_id,
            best_metrics["sharpe"],
            "PROMOTED, " + why if ok else "kept champion: " + why,
        )
        others = [r[0] for r in recorded if r[0] != best_id]
        if others:
            await self.registry.verdict(others, f"not the round's best ({best_id} was)")
        await self.registry.verdict([best_id], "; ".join([why, *notes]))
        if ok:
            await self.registry.promote(best_id, best.algo, best.checkpoint, best_metrics, markets=markets)
            summary["promoted"] = best_id
        summary["reason"] = why
        ids = [r[0] for r in recorded]
        await self.registry.announce(verdict(self.rounds, markets, ids, (best_id, best_metrics), ok, why, notes))
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
    async with service_context(settings, "trainer") as svc:
        await run(svc)


async def run(svc: ServiceContext) -> None:
    """Consume the configured venues' trades and run a training round every ``trainer.interval_s``."""
    settings = svc.settings
    trainer = OnlineTrainer(settings, PolicyRegistry(svc.database, svc.bus))
    exchanges = settings.trainer.venues or [n for n, v in settings.ingest.venues.items() if v.enabled]

    async def handle(deliveries: list[Delivery]) -> None:
        trainer.on_trades([m for d in deliveries for m in d.messages if isinstance(m, Trade)])

    consumer = Consumer(
        svc.redis,
        [streams.md_trades(e) for e in exchanges],
        settings.trainer.group,
        handle,
        settings.bus,
        name=f"trainer-{uuid.uuid4().hex[:6]}",
        metrics=svc.metrics,
    )
    stopping = asyncio.Event()

    def stop() -> None:
        consumer.stop()
        stopping.set()

    svc.on_stop(stop)
    await _seed_from_db(trainer, svc.database, exchanges)
    watched = ServiceTasks("trainer")  # a dead trade consumer stops the trainer loudly, not silently
    consuming = watched.start(consumer.run(), "trades")
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
                await watched.until(asyncio.wait_for(stopping.wait(), max(0.0, next_round - time.monotonic())))
            if stopping.is_set():
                break
            summary = await trainer.run_round()
            next_round = time.monotonic() + (settings.trainer.interval_s if summary else settings.trainer.first_round_s)
    finally:
        stop()
        await asyncio.gather(consuming, return_exceptions=True)
