"""What a round's verdict says, in the registry and on `policy:updates`: the held-out figures of the
judged trial beside the champion's and each baseline's, and whether it was promoted and why (not)."""

from __future__ import annotations

import time
from typing import Any

from shared.schemas import PolicyVerdict
from shared.storage.policies import Market

FIGURES = ("sharpe", "total_return", "max_drawdown", "trades")


def figures(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The headline held-out figures of a report (None stays None)."""
    if report is None:
        return None
    return {k: report[k] for k in FIGURES if k in report}


def trial_metrics(
    report: dict[str, Any], champion: dict[str, Any] | None, champion_report: dict[str, Any] | None, notes: list[str]
) -> dict[str, Any]:
    """A trial's registry metrics: its held-out report (less the per-window detail), the champion's
    figures on the same bars (`champion`: None when there was none) and any notes on the sample."""
    metrics = {k: v for k, v in report.items() if k != "windows"}
    metrics["baselines"] = {
        name: {k: v for k, v in base.items() if k != "windows"} for name, base in report.get("baselines", {}).items()
    }
    beside = figures(champion_report)
    metrics["champion"] = None if beside is None else {"id": (champion or {}).get("id"), **beside}
    if notes:
        metrics["sample"] = notes
    return metrics


def verdict(
    round_no: int,
    markets: list[Market],
    trials: list[str],
    best: tuple[str, dict[str, Any]] | None,
    promoted: bool,
    reason: str,
    notes: list[str],
) -> PolicyVerdict:
    """The round's verdict as published; `best` is the judged trial's (id, registry metrics)."""
    best_id, metrics = best if best else (None, {})
    champion = metrics.get("champion") or {}
    return PolicyVerdict(
        round=round_no,
        ts=time.time_ns(),
        markets=[(e, s) for e, s in markets],
        trials=trials,
        promoted=promoted,
        reason=reason,
        best=best_id,
        sharpe=_number(metrics.get("sharpe")),
        total_return=_number(metrics.get("total_return")),
        champion_sharpe=_number(champion.get("sharpe")),
        baselines={
            name: float(b["sharpe"])
            for name, b in metrics.get("baselines", {}).items()
            if _number(b.get("sharpe")) is not None
        },
        notes=notes,
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
