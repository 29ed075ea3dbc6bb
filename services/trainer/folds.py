"""Walk-forward training: retrain on an expanding window, judge each fold on the bars after it.

A training loop over evaluation's out-of-sample backtests, kept apart from both so that neither
``training`` nor ``evaluation`` imports the other's caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from services.trainer.backtest import BacktestResult, metrics
from services.trainer.evaluation import walk_forward
from services.trainer.training import load_config, train
from shared.rl.features import compute_features
from shared.rl.weights import load_weights_policy


def walk_forward_train(
    bars: Any,
    algo: str,
    out_dir: str | Path,
    folds: int,
    timesteps: int,
    seed: int = 0,
    gpus: float = 0.0,
    config: dict[str, Any] | None = None,
    first_train: float = 0.5,
    train_fn: Any = None,
) -> dict[str, Any]:
    """Retrain on an expanding window and test on the next fold, `folds` times; chain the out-of-sample folds.

    Fold k trains on bars [0, edge_k) and is judged on [edge_k, edge_k+1) only, beside the
    baselines: every bar of the report is out of sample for the policy that traded it.
    """
    train_fn = train_fn or train
    config = config or load_config(algo)
    n = len(bars)
    edges = np.linspace(int(n * first_train), n, folds + 1).astype(int)
    selecting = int(config.get("selection", {}).get("every_steps", 0)) > 0
    fold_reports = []
    for k in range(folds):
        data = bars.slice(0, int(edges[k + 1]))
        if selecting:  # weights are chosen on the training window's own tail: the fold stays unseen
            train_end = int(edges[k] * 0.8)
            split = {"train": train_end / len(data), "validation": (edges[k] - train_end) / len(data)}
        else:
            split = {"train": edges[k] / len(data), "validation": (edges[k + 1] - edges[k]) / len(data) / 2}
        fold_config = {**config, "split": split}
        out = Path(out_dir) / f"fold-{k}"
        train_fn(data, algo, out, timesteps=timesteps, seed=seed + k, gpus=gpus, config=fold_config)
        policy = load_weights_policy(out, None)
        market = compute_features(data, **policy.feature_options)
        report = walk_forward(policy, market, policy.env_config, start=int(edges[k]), windows=1)
        fold_reports.append(report)
    return _chain_folds(fold_reports, algo, market.bar_seconds)


def _chain_folds(reports: list[dict[str, Any]], algo: str, bar_seconds: float) -> dict[str, Any]:
    def chained(curves: list[np.ndarray]) -> BacktestResult:
        growth = np.concatenate([c[1:] / c[:-1] if c[0] > 0 else np.zeros(len(c) - 1) for c in curves])
        equity = np.concatenate(([1.0], np.cumprod(growth)))
        return BacktestResult(
            equity=equity, positions=np.zeros(len(growth)), costs=np.zeros(len(growth)), bar_seconds=bar_seconds
        )

    names = list(reports[0]["_curves"])  # the fold's policy first, then the baselines
    summary: dict[str, Any] = {"algo": algo, "folds": []}
    for i, name in enumerate(names):
        m = metrics(chained([list(r["_curves"].values())[i] for r in reports]))
        keep = {k: m[k] for k in ("total_return", "sharpe", "sortino", "max_drawdown", "deflated_sharpe", "bars")}
        if i == 0:
            keep.update(
                trades=sum(r["trades"] for r in reports),
                turnover=sum(r["turnover"] for r in reports),
                fees=sum(r["fees"] for r in reports),
            )
            summary.update(keep)
        else:
            summary.setdefault("baselines", {})[name] = keep
    for r in reports:
        summary["folds"].append(
            {
                "from_ts": r["from_ts"],
                "to_ts": r["to_ts"],
                "total_return": r["total_return"],
                "sharpe": r["sharpe"],
                "trades": r["trades"],
                **{f"{b}_return": v["total_return"] for b, v in r["baselines"].items()},
            }
        )
    return summary
