"""The online trainer: bars from `md:trades:*`, periodic train / evaluate / promote rounds.

Each round takes the rolling window of the busiest market (or the configured one), holds out
its most recent part, trains a challenger and fine-tunes the champion on the rest, evaluates
everything on the held-out bars beside the baselines, records every trial in `policies`, and
promotes only a policy that beats the champion and the baselines there (then publishes
`policy:updates`). With `trainer.portfolio` set, a round instead trains ONE portfolio policy over
those markets' time-aligned bars and judges it the same way against the champion of that market
set and the portfolio baselines. Training runs in a separate process, so consuming never stalls and Ray
never lives in the service process.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.trainer.data import DataError, load_bars_from_db
from services.trainer.errors import TrainingError
from services.trainer.evaluation import public_report, should_promote, walk_forward
from services.trainer.market_dir import align_bars
from services.trainer.portfolio_eval import evaluate
from services.trainer.portfolio_training import portfolio_config_from, portfolio_data, train_portfolio
from services.trainer.splits import Split
from services.trainer.training import feature_options, load_config, train
from shared.bus import Consumer, Delivery
from shared.config import Settings
from shared.rl.bars import Bars
from shared.rl.features import compute_features
from shared.rl.live_bars import LiveBars
from shared.rl.portfolio import Market, load_portfolio_policy
from shared.rl.weights import load_weights_policy
from shared.runtime import ServiceContext, ServiceTasks, service_context
from shared.schemas import Trade, streams
from shared.sections.trainer import TrainerSettings
from shared.storage import Database
from shared.storage.policies import PolicyRegistry

log = logging.getLogger(__name__)

TrainFn = Callable[..., Any]


@dataclass(frozen=True)
class Trial:
    """One trained policy of a round and its held-out report (plain data: it crosses processes)."""

    algo: str
    checkpoint: str
    report: dict[str, Any]
    hyperparameters: dict[str, Any]


def train_and_evaluate(
    cfg: TrainerSettings,
    bars: Bars,
    champion: dict[str, Any] | None,
    round_no: int,
    train_fn: TrainFn = train,
    taker_fee: float | None = None,
) -> tuple[list[Trial], dict[str, Any] | None]:
    """Train a challenger (and fine-tune the champion) on the window less its held-out tail; report
    every policy, the champion included, on that tail. Returns (trials, champion's held-out report).

    Costs are the trainer settings' (`taker_fee` replaces `fee_taker`: the fee the paper exchange
    charges on the market's venue), so a policy is trained and judged on what trading it will cost."""
    holdout = cfg.holdout_fraction
    overrides = (
        f"split.train={1 - holdout}",
        f"split.validation={holdout / 2}",
        "selection.every_steps=0",  # the whole held-out tail judges the round: nothing may be chosen on it
        f"env.allow_short={str(cfg.allow_short).lower()}",
        f"cost.taker_fee={cfg.fee_taker if taker_fee is None else taker_fee}",
        f"cost.half_spread={cfg.half_spread}",
        f"cost.impact={cfg.impact}",
    )
    config = load_config(cfg.algo, None, overrides)
    market = compute_features(bars, **feature_options(config))
    split = Split.by_fractions(len(market), 1 - holdout, holdout / 2)
    root = Path(cfg.policy_dir).resolve()
    champion_dir = Path(champion["checkpoint_uri"]) if champion else None
    runs: list[Path | None] = [None]
    if champion and champion_dir and champion["algo"] == cfg.algo and champion_dir.is_dir():
        runs.append(champion_dir)  # fine-tune the champion on the new window
    trials = []
    for parent in runs:
        out = root / f"{cfg.algo}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        try:
            train_fn(
                bars,
                cfg.algo,
                out,
                timesteps=cfg.timesteps,
                seed=round_no,
                gpus=cfg.gpus,
                config=config,
                data_label="md:trades",
                init_from=parent,
                bar_clock=cfg.bar_clock,
            )
            policy = load_weights_policy(out, root)  # the exported weights: what the executor will trade
            report = walk_forward(policy, market, policy.env_config, start=split.train_end, windows=2)
        except (TrainingError, DataError, ValueError) as exc:
            log.warning("trainer: %s run%s failed: %s", cfg.algo, " (fine-tune)" if parent else "", exc)
            continue
        hyper = {
            "algo": cfg.algo,
            "timesteps": cfg.timesteps,
            "fine_tuned_from": str(parent) if parent else None,
            **config.get("training", {}),
        }
        trials.append(Trial(cfg.algo, str(out), public_report(report), hyper))
    champion_report = None
    if champion_dir is not None and champion_dir.is_dir():
        try:  # the champion itself, on the same held-out bars
            current = load_weights_policy(champion_dir, root)
            champion_report = public_report(
                walk_forward(current, market, current.env_config, start=split.train_end, windows=2)
            )
        except (ValueError, OSError) as exc:  # PolicyError is a ValueError
            log.warning("trainer: champion %s cannot be evaluated: %s", champion_dir, exc)
    return trials, champion_report


def train_and_evaluate_portfolio(
    cfg: TrainerSettings,
    markets: list[Market],
    bars: list[Bars],
    champion: dict[str, Any] | None,
    round_no: int,
    train_fn: TrainFn = train_portfolio,
    taker_fee: float | None = None,
) -> tuple[list[Trial], dict[str, Any] | None]:
    """Train one portfolio policy over `markets` (aligned `bars`) on the window less its held-out tail;
    report it and the market set's champion on that tail beside the portfolio baselines.

    Every venue is charged `taker_fee` (the highest paper taker fee among the markets' venues) or else
    the trainer's `fee_taker`. A portfolio champion is judged, not fine-tuned: each round trains afresh."""
    holdout = cfg.holdout_fraction
    overrides = (
        f"split.train={1 - holdout}",
        f"split.validation={holdout / 2}",
        f"cost.taker_fee={cfg.fee_taker if taker_fee is None else taker_fee}",
        f"cost.half_spread={cfg.half_spread}",
        f"cost.impact={cfg.impact}",
    )
    config = load_config(cfg.algo, None, overrides)
    pcfg = portfolio_config_from(config, cfg.algo)
    data = portfolio_data(bars, markets, config, cfg.algo)
    split = Split.by_fractions(len(data), 1 - holdout, holdout / 2)
    root = Path(cfg.policy_dir).resolve()
    out = root / f"portfolio-{cfg.algo}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    trials = []
    try:
        train_fn(
            bars,
            markets,
            cfg.algo,
            out,
            timesteps=cfg.timesteps,
            seed=round_no,
            gpus=cfg.gpus,
            config=config,
            data_label="md:trades",
            bar_clock=cfg.bar_clock,
        )
        policy = load_portfolio_policy(out, root)  # the exported weights: what the executor will trade
        report = evaluate(policy, data, split.train_end, len(data) - 1, pcfg)
    except (TrainingError, DataError, ValueError) as exc:
        log.warning("trainer: %s portfolio run failed: %s", cfg.algo, exc)
    else:
        hyper = {"algo": cfg.algo, "timesteps": cfg.timesteps, **config.get("training", {})}
        trials.append(Trial(cfg.algo, str(out), public_report(report), hyper))
    champion_report = None
    champion_dir = Path(champion["checkpoint_uri"].split("#", 1)[0]) if champion else None
    if champion_dir is not None and champion_dir.is_dir():
        try:  # the champion itself, on the same held-out bars
            current = load_portfolio_policy(champion_dir, root)
            champion_report = public_report(evaluate(current, data, split.train_end, len(data) - 1, pcfg))
        except (ValueError, OSError) as exc:
            log.warning("trainer: champion %s cannot be evaluated: %s", champion_dir, exc)
    return trials, champion_report


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
        champion = await self.registry.champion(*key)
        venue = self.settings.executor.venues.get(key[0])
        args = (self.cfg, bars, champion, self.rounds, self.train_fn, venue.taker_fee if venue else None)
        try:
            trials, champion_report = await self._train(train_and_evaluate, *args)
        except (TrainingError, DataError, ValueError, BrokenProcessPool) as exc:
            log.warning("trainer: round on %s/%s skipped: %s", *key, exc)
            return None
        self.rounds += 1
        return await self._decide([key], bars, trials, champion_report)

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
        champion = await self.registry.champion(markets=markets)
        fees = [v.taker_fee for v in (self.settings.executor.venues.get(ex) for ex, _ in markets) if v]
        args = (self.cfg, markets, bars, champion, self.rounds, self.portfolio_train_fn, max(fees, default=None))
        try:
            trials, champion_report = await self._train(train_and_evaluate_portfolio, *args)
        except (TrainingError, DataError, ValueError, BrokenProcessPool) as exc:
            log.warning("trainer: portfolio round on %s skipped: %s", markets, exc)
            return None
        self.rounds += 1
        return await self._decide(markets, bars[0], trials, champion_report)

    async def _decide(
        self, markets: list[Market], bars: Bars, trials: list[Trial], champion_report: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Record every trial of the round, then promote its best only when `should_promote` holds."""
        label = ", ".join(f"{e}/{s}" for e, s in markets)
        recorded = []
        for trial in trials:
            metrics = {k: v for k, v in trial.report.items() if k != "windows"}
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
        if not recorded:
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
        await self.registry.verdict([best_id], why)
        if ok:
            await self.registry.promote(best_id, best.algo, best.checkpoint, best_metrics, markets=markets)
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
