"""One online round's work, in the training process: train on the window less its held-out tail, report
every policy (the champion too) on that tail beside the baselines. Plain data in and out: it crosses
processes (`OnlineTrainer` runs it in a fresh spawned one)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.trainer.data import DataError
from services.trainer.errors import TrainingError
from services.trainer.evaluation import public_report, round_report, walk_forward
from services.trainer.portfolio_eval import evaluate
from services.trainer.portfolio_training import portfolio_config_from, portfolio_data, train_portfolio
from services.trainer.splits import Split
from services.trainer.training import feature_options, load_config, train
from shared.rl.bars import Bars
from shared.rl.features import compute_features
from shared.rl.portfolio import Market, load_portfolio_policy
from shared.rl.weights import load_weights_policy
from shared.sections.trainer import TrainerSettings

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
        trials.append(Trial(cfg.algo, str(out), round_report(report), hyper))
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
        report = evaluate(policy, data, split.train_end, len(data) - 1, pcfg, curve=True)
    except (TrainingError, DataError, ValueError) as exc:
        log.warning("trainer: %s portfolio run failed: %s", cfg.algo, exc)
    else:
        hyper = {"algo": cfg.algo, "timesteps": cfg.timesteps, **config.get("training", {})}
        trials.append(Trial(cfg.algo, str(out), round_report(report), hyper))
    champion_report = None
    champion_dir = Path(champion["checkpoint_uri"].split("#", 1)[0]) if champion else None
    if champion_dir is not None and champion_dir.is_dir():
        try:  # the champion itself, on the same held-out bars
            current = load_portfolio_policy(champion_dir, root)
            champion_report = public_report(evaluate(current, data, split.train_end, len(data) - 1, pcfg))
        except (ValueError, OSError) as exc:
            log.warning("trainer: champion %s cannot be evaluated: %s", champion_dir, exc)
    return trials, champion_report
