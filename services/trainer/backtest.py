"""Vectorised backtests: a position per bar in, equity curve and honest metrics out.

The accounting is the env's, bar for bar: the change of position at bar t is traded at close[t]
through the cost model, then the position earns close[t+1]/close[t] - 1. Costs are charged in a
loop over trades only (impact depends on equity at that moment); everything else is numpy, so a
year of 1-minute bars takes milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from shared.rl.costs import CostModel
from shared.rl.features import MarketData

SECONDS_PER_YEAR = 365.25 * 86_400
EULER_GAMMA = 0.5772156649015329


@dataclass(frozen=True)
class BacktestResult:
    """Equity before each decision bar and after the last, plus what the trades cost."""

    equity: NDArray[np.float64]  # len(positions) + 1
    positions: NDArray[np.float64]
    costs: NDArray[np.float64]  # quote currency, per bar
    bar_seconds: float

    @property
    def returns(self) -> NDArray[np.float64]:
        e = self.equity
        return np.divide(e[1:], e[:-1], out=np.full(len(e) - 1, -1.0), where=e[:-1] > 0) - 1.0


def simulate(
    market: MarketData,
    positions: NDArray[np.float64],
    start: int,
    cost: CostModel,
    initial_cash: float = 10_000.0,
) -> BacktestResult:
    """Hold `positions[i]` over bar start+i -> start+i+1, starting flat with `initial_cash`."""
    n = len(positions)
    if start < 0 or start + n >= len(market) + 1 or n == 0:
        raise ValueError(f"simulate: positions for bars [{start}, {start + n}) do not fit {len(market)} bars")
    if start + n > len(market) - 1:
        raise ValueError(f"simulate: bar {start + n - 1} has no next close to earn over")
    positions = np.asarray(positions, dtype=np.float64)
    close = market.close[start : start + n + 1]
    growth = 1.0 + positions * (close[1:] / close[:-1] - 1.0)
    change = np.abs(np.diff(positions, prepend=0.0))
    trade_idx = np.flatnonzero(change > 0.0)
    # equity without costs, before each bar: V0 * prod(growth[:i])
    gross = initial_cash * np.concatenate(([1.0], np.cumprod(growth)))
    factor = np.ones(n + 1)  # fraction of equity kept after each bar's trade cost
    costs = np.zeros(n)
    kept = 1.0
    notional = market.bar_notional[start : start + n]
    spread = None if market.half_spread is None else market.half_spread[start : start + n]
    for i in trade_idx.tolist():
        equity_i = gross[i] * kept
        if equity_i <= 0.0:
            break
        traded = change[i] * equity_i
        c = cost.cost_one(traded, float(notional[i]), None if spread is None else float(spread[i]))
        costs[i] = c
        factor[i + 1] = max(1.0 - c / equity_i, 0.0)
        kept *= factor[i + 1]
    keep = np.cumprod(factor)
    equity = np.maximum(gross * keep, 0.0)
    return BacktestResult(equity=equity, positions=positions, costs=costs, bar_seconds=market.bar_seconds)


def deflated_sharpe(returns: NDArray[np.float64], trials: int) -> float:
    """Probability that the true Sharpe exceeds the best of `trials` unskilled ones (Bailey & López de Prado)."""
    t = len(returns)
    sd = returns.std()
    if t < 3 or sd == 0.0:
        return 0.0
    sr = returns.mean() / sd
    z = (returns - returns.mean()) / sd
    skew, kurt = float(np.mean(z**3)), float(np.mean(z**4))
    var_sr = max((1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr) / (t - 1), 1e-300)
    norm = NormalDist()
    sr0 = 0.0
    if trials > 1:
        sr0 = math.sqrt(var_sr) * (
            (1 - EULER_GAMMA) * norm.inv_cdf(1 - 1 / trials) + EULER_GAMMA * norm.inv_cdf(1 - 1 / (trials * math.e))
        )
    return norm.cdf((sr - sr0) / math.sqrt(var_sr))


def metrics(result: BacktestResult, trials: int = 1) -> dict[str, float]:
    """Total return, annualised Sharpe/Sortino, max drawdown, turnover, trades, fees, exposure, deflated Sharpe."""
    r = result.returns
    per_year = SECONDS_PER_YEAR / max(result.bar_seconds, 1e-9)
    sd = r.std()
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2))) if len(r) else 0.0
    equity = result.equity
    peak = np.maximum.accumulate(equity)
    drawdown = np.where(peak > 0, 1.0 - equity / np.where(peak > 0, peak, 1.0), 0.0)
    change = np.abs(np.diff(result.positions, prepend=0.0))
    return {
        "total_return": float(equity[-1] / equity[0] - 1.0) if equity[0] > 0 else 0.0,
        "sharpe": float(r.mean() / sd * math.sqrt(per_year)) if sd > 0 else 0.0,
        "sortino": float(r.mean() / downside * math.sqrt(per_year)) if downside > 0 else 0.0,
        "max_drawdown": float(drawdown.max()),
        "turnover": float(change.sum()),
        "trades": int(np.count_nonzero(change)),
        "fees": float(result.costs.sum()),
        "exposure": float(np.mean(result.positions != 0.0)),
        "deflated_sharpe": float(deflated_sharpe(r, trials)),
        "bars": len(r),
    }
