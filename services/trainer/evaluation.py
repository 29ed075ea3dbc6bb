"""Honest evaluation: out-of-sample walk-forward backtests, promotion rules, and the policy registry.

A policy is judged only on bars after the data it was trained on, in consecutive windows,
side by side with the baselines under the same costs. It is promoted only if it beats the
current champion and every baseline there; every trial is recorded, so the deflated Sharpe
ratio can discount for how many were tried.
"""

from __future__ import annotations

import itertools
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from services.trainer.backtest import BacktestResult, metrics, simulate
from services.trainer.policy import BASELINES, Policy
from services.trainer.splits import Split
from shared.rl.env_config import EnvConfig
from shared.rl.features import WARMUP, MarketData
from shared.rl.policy import CheckpointPolicy
from shared.rl.weights import load_weights_policy
from shared.storage.policies import json_ready

if TYPE_CHECKING:  # the bus (redis) is loaded only by those that publish
    pass

PROMOTION_METRIC = "sharpe"


def out_of_sample_start(policy: Policy, market: MarketData) -> int:
    """The first bar a policy has not been trained on (after the warm-up of the features)."""
    start = min(WARMUP, len(market) // 4)
    if isinstance(policy, CheckpointPolicy):
        trained_from, trained_to = int(policy.meta["train_from_ns"]), int(policy.meta["train_to_ns"])
        if "selection" in policy.meta:  # its weights were chosen on the validation bars
            trained_to = int(policy.meta["validation_to_ns"])
        # bars from the training period, or before it, could share information with the
        # training data (same market, same news): only bars after it count when they overlap
        if market.ts[0] <= trained_to and market.ts[-1] >= trained_from:
            start = max(start, int(np.searchsorted(market.ts, trained_to, side="right")))
    return start


def run_backtest(policy: Policy, market: MarketData, start: int, stop: int, config: EnvConfig) -> BacktestResult:
    """Backtest one policy over bars [start, stop) under the env config's costs."""
    positions = policy.positions(market, start, stop, config)
    return simulate(market, positions, start, config.cost, config.initial_cash)


def walk_forward(
    policy: Policy,
    market: MarketData,
    config: EnvConfig,
    start: int | None = None,
    windows: int = 4,
    trials: int = 1,
    baselines: tuple[str, ...] = tuple(BASELINES),
) -> dict[str, Any]:
    """Metrics of `policy` and the baselines over the out-of-sample bars, overall and per window."""
    start = out_of_sample_start(policy, market) if start is None else start
    stop = len(market) - 1
    if stop - start < 2:
        raise ValueError(f"backtest: no out-of-sample bars left (policy trained up to bar {start} of {len(market)})")
    result = run_backtest(policy, market, start, stop, config)
    report: dict[str, Any] = {"policy": policy.name, **metrics(result, trials)}
    report["from_ts"] = int(market.ts[start])
    report["to_ts"] = int(market.ts[stop])
    report["windows"] = _window_metrics(result, start, market, windows)
    report["baselines"] = {}
    report["_curves"] = {policy.name: result.equity}
    report["_ts"] = market.ts[start : stop + 1]  # each equity point's bar
    for name in baselines:
        base = run_backtest(BASELINES[name], market, start, stop, config)
        report["baselines"][name] = {**metrics(base, trials), "windows": _window_metrics(base, start, market, windows)}
        report["_curves"][name] = base.equity
    report["vs_buy_and_hold"] = report["total_return"] - report["baselines"].get("buy_and_hold", {}).get(
        "total_return", 0.0
    )
    return report


def _window_metrics(result: BacktestResult, start: int, market: MarketData, windows: int) -> list[dict[str, Any]]:
    edges = np.linspace(0, len(result.positions), max(windows, 1) + 1).astype(int)
    out = []
    for a, b in itertools.pairwise(edges):
        if b - a < 2:
            continue
        part = BacktestResult(
            equity=result.equity[a : b + 1],
            positions=result.positions[a:b],
            costs=result.costs[a:b],
            bar_seconds=result.bar_seconds,
        )
        m = metrics(part)
        out.append(
            {
                "from_ts": int(market.ts[start + a]),
                "total_return": m["total_return"],
                "sharpe": m["sharpe"],
                "max_drawdown": m["max_drawdown"],
            }
        )
    return out


def evaluate_split(checkpoint: str | Path, market: MarketData, split: Split) -> dict[str, Any]:
    """Validation and test metrics of a freshly trained checkpoint beside the baselines, run from its
    exported weights (what the executor and `tradewind backtest` will run)."""
    policy = load_weights_policy(checkpoint, None)
    config = policy.env_config
    out: dict[str, Any] = {}
    for name, (a, b) in {
        "validation": (split.train_end, split.validation_end),
        "test": (split.validation_end, split.n_bars - 1),
    }.items():
        result: dict[str, Any] = dict(metrics(run_backtest(policy, market, a, b, config)))
        result["baselines"] = {
            base: {
                k: metrics(run_backtest(BASELINES[base], market, a, b, config))[k] for k in ("total_return", "sharpe")
            }
            for base in BASELINES
        }
        out[name] = result
    return out


def should_promote(
    candidate: dict[str, Any], champion: dict[str, Any] | None, baselines: dict[str, dict[str, Any]]
) -> tuple[bool, str]:
    """Promote only a candidate that beats the champion and every baseline out of sample, after costs."""
    score = float(candidate[PROMOTION_METRIC])
    if candidate["total_return"] <= 0.0:
        return False, f"total return {candidate['total_return']:.4f} is not positive"
    for name, base in baselines.items():
        if score <= float(base[PROMOTION_METRIC]):
            return False, f"{PROMOTION_METRIC} {score:.3f} does not beat baseline {name} ({base[PROMOTION_METRIC]:.3f})"
    if champion is not None and score <= float(champion[PROMOTION_METRIC]):
        return False, f"{PROMOTION_METRIC} {score:.3f} does not beat the champion ({champion[PROMOTION_METRIC]:.3f})"
    return True, "beats the champion and every baseline out of sample"


def public_report(report: dict[str, Any]) -> dict[str, Any]:
    """The report without its equity curves (what `--json` prints)."""
    return json_ready(report)


def round_report(report: dict[str, Any], points: int = 200) -> dict[str, Any]:
    """An online round's report for the registry: the public one plus the policy's held-out equity
    curve after costs, at most ``points`` ``[unix s, equity / start]`` pairs (the dashboard draws it;
    few enough to keep the registry's figures small)."""
    curve, ts = report["_curves"][report["policy"]], report["_ts"]
    idx = np.unique(np.linspace(0, len(curve) - 1, min(points, len(curve))).astype(int))
    equity = [[int(ts[i]) / 1e9, round(float(curve[i] / curve[0]), 6)] for i in idx]
    return {**public_report(report), "equity": equity}


def write_equity_html(report: dict[str, Any], path: str | Path, points: int = 800) -> None:
    """Write the equity curves of a walk-forward report as a self-contained HTML/SVG page."""
    curves: dict[str, np.ndarray] = report["_curves"]
    width, height, pad = 960, 420, 40
    everything = np.concatenate([c / c[0] for c in curves.values()])
    lo, hi = float(everything.min()), float(everything.max())
    span = hi - lo or 1.0
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    lines, legend = [], []
    for i, (name, curve) in enumerate(curves.items()):
        idx = np.linspace(0, len(curve) - 1, min(points, len(curve))).astype(int)
        y = curve[idx] / curve[0]
        xs = pad + (width - 2 * pad) * idx / max(len(curve) - 1, 1)
        ys = height - pad - (height - 2 * pad) * (y - lo) / span
        pts = " ".join(f"{x:.1f},{v:.1f}" for x, v in zip(xs, ys, strict=True))
        colour = colours[i % len(colours)]
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>')
        legend.append(f'<span style="color:{colour}">&#9632; {escape(name)} ({y[-1] - 1:+.2%})</span>')
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect width="100%" height="100%" fill="white"/>{"".join(lines)}'
        f'<text x="{pad}" y="{pad - 10}" font-size="12">equity / start: {hi:.3f}</text>'
        f'<text x="{pad}" y="{height - 10}" font-size="12">{lo:.3f}</text></svg>'
    )
    Path(path).write_text(
        f"<!doctype html><meta charset=utf-8><title>Tradewind backtest: {escape(report['policy'])}</title>"
        f"<h3>Out-of-sample equity, after costs</h3><p>{' &nbsp; '.join(legend)}</p>{svg}"
    )
