"""Out-of-sample backtests of portfolio policies beside the portfolio baselines, with the env's accounting.

Baselines (all after the same costs, funding and borrow): `flat`; `buy_and_hold` (equal weight
within each venue, long); `momentum` (each market long after a rise over the last hour of bars,
short after a fall where it may short, else flat; equal weight within each venue);
`best_single_market` (the best of buy_and_hold and momentum run on any one market alone, by
Sharpe, chosen on the same bars it is reported on: a generous yardstick).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.trainer.backtest import BacktestResult, metrics
from services.trainer.policy import MOMENTUM_LOOKBACK
from services.trainer.portfolio_env import Accounts, Book
from shared.rl.portfolio import PortfolioConfig, PortfolioData, PortfolioPolicy, observe, weight_bounds

BaselineRule = Callable[[PortfolioData, int, int, PortfolioConfig], NDArray[np.float64]]
PORTFOLIO_BASELINES = ("buy_and_hold", "flat", "momentum", "best_single_market")


def _per_venue(data: PortfolioData) -> NDArray[np.float64]:
    venue = data.venue_index
    return 1.0 / np.bincount(venue)[venue]


def buy_and_hold(data: PortfolioData, start: int, stop: int, config: PortfolioConfig) -> NDArray[np.float64]:
    return np.tile(_per_venue(data), (stop - start, 1))


def flat(data: PortfolioData, start: int, stop: int, config: PortfolioConfig) -> NDArray[np.float64]:
    return np.zeros((stop - start, data.n_markets))


def momentum(data: PortfolioData, start: int, stop: int, config: PortfolioConfig) -> NDArray[np.float64]:
    t = np.arange(start, stop)
    signal = np.sign(data.close[t] - data.close[np.maximum(t - MOMENTUM_LOOKBACK, 0)])
    low, _ = weight_bounds(data.markets, config)
    return np.maximum(signal, low) * _per_venue(data)


RULES: dict[str, BaselineRule] = {"buy_and_hold": buy_and_hold, "flat": flat, "momentum": momentum}


def simulate_weights(
    data: PortfolioData, weights: NDArray[np.float64], start: int, config: PortfolioConfig
) -> tuple[BacktestResult, NDArray[np.float64]]:
    """Target `weights[i]` at bar start+i, held to start+i+1, from flat: (result, traded), where `traded`
    is each bar's signed traded notional per market over its venue's equity (0 where no order went)."""
    n = len(weights)
    if start < 0 or n == 0 or start + n > len(data) - 1:
        raise ValueError(f"backtest: weights for bars [{start}, {start + n}) do not fit {len(data)} bars")
    book = Book(data, Accounts(data, config), config.initial_cash)
    equity, costs, gross = np.empty(n + 1), np.zeros(n), np.zeros(n)
    traded = np.zeros((n, data.n_markets))
    equity[0] = book.equity(start).sum()
    for i in range(n):
        costs[i], traded[i] = book.step(start + i, np.asarray(weights[i], dtype=np.float64))
        gross[i] = float(np.abs(book.qty * data.close[start + i]).sum())  # held after bar start+i's orders
        equity[i + 1] = book.equity(start + i + 1).sum()
    return BacktestResult(equity=equity, positions=gross, costs=costs, bar_seconds=data.bar_seconds), traded


def policy_weights(
    policy: PortfolioPolicy, data: PortfolioData, start: int, stop: int, config: PortfolioConfig | None = None
) -> NDArray[np.float64]:
    """The policy's target weights bar by bar, each observation carrying the weights the account holds
    then (as the env gives them: `simulate_weights` of the result replays the same trades)."""
    if tuple(policy.meta["feature_names"]) != data.names:
        raise ValueError(
            f"{policy.path}: trained on features {policy.meta['feature_names']}, the data gives {data.names}"
        )
    config = config or policy.config
    last = data.last_return
    book = Book(data, Accounts(data, config), config.initial_cash)
    out = np.empty((stop - start, data.n_markets))
    for i, t in enumerate(range(start, stop)):
        out[i] = policy.weights(observe(data.features[t], book.weights(t), last[t])[None, :])[0]
        book.step(t, out[i])
    return out


def portfolio_metrics(result: BacktestResult, traded: NDArray[np.float64], trials: int = 1) -> dict[str, Any]:
    """`backtest.metrics` with turnover and trades counted from the orders that went (`simulate_weights`'
    `traded`) over every market, exposure from the positions held."""
    m: dict[str, Any] = dict(metrics(result, trials))
    m["turnover"] = float(np.abs(traded).sum())
    m["trades"] = int(np.count_nonzero(traded))
    m["exposure"] = float(np.mean(result.positions > 0.0))
    return m


def _single(data: PortfolioData, i: int) -> PortfolioData:
    return PortfolioData(
        markets=(data.markets[i],),
        names=data.names,
        features=data.features,
        close=data.close[:, [i]],
        bar_notional=data.bar_notional[:, [i]],
        funding=data.funding[:, [i]],
        ts=data.ts,
        bar_seconds=data.bar_seconds,
    )


def baseline_report(
    data: PortfolioData, start: int, stop: int, config: PortfolioConfig, trials: int = 1
) -> dict[str, Any]:
    """Metrics of every portfolio baseline over bars [start, stop)."""
    out: dict[str, Any] = {}
    for name, rule in RULES.items():
        out[name] = portfolio_metrics(*simulate_weights(data, rule(data, start, stop, config), start, config), trials)
    best: dict[str, Any] | None = None
    for i, market in enumerate(data.markets):
        alone = _single(data, i)
        for name in ("buy_and_hold", "momentum"):
            w = RULES[name](alone, start, stop, config)
            m = portfolio_metrics(*simulate_weights(alone, w, start, config), trials)
            if best is None or m["sharpe"] > best["sharpe"]:
                best = {**m, "market": f"{market[0]}:{market[1]}", "rule": name}
    out["best_single_market"] = best
    return out


def evaluate(
    policy: PortfolioPolicy | str,
    data: PortfolioData,
    start: int,
    stop: int,
    config: PortfolioConfig,
    trials: int = 1,
    curve: bool = False,
) -> dict[str, Any]:
    """One report: the policy's (or `baseline:NAME`'s) metrics over [start, stop) and every baseline's;
    with ``curve`` also the policy's equity curve and its bars (``_curves``, ``_ts``: arrays, for
    `evaluation.round_report`, not for JSON)."""
    baselines = baseline_report(data, start, stop, config, trials)
    if isinstance(policy, str):
        name = policy.removeprefix("baseline:")
        if name not in baselines:
            raise ValueError(f"--policy {policy}: unknown baseline; expected one of {', '.join(PORTFOLIO_BASELINES)}")
        report = {"policy": policy, **baselines[name]}
    else:
        w = policy_weights(policy, data, start, stop, config)
        result, traded = simulate_weights(data, w, start, config)
        report = {"policy": policy.name, **portfolio_metrics(result, traded, trials)}
        if curve:
            report["_curves"], report["_ts"] = {policy.name: result.equity}, data.ts[start : stop + 1]
    report["markets"] = [f"{ex}:{sym}" for ex, sym in data.markets]
    report["from_ts"], report["to_ts"] = int(data.ts[start]), int(data.ts[stop])
    report["baselines"] = baselines
    return report
