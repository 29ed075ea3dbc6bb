"""Synthetic markets with a known, exploitable structure and the oracle that exploits it.

Learning is proven on these: a policy that reaches a good share of the oracle's out-of-sample
Sharpe after costs has learned the structure, which real data can neither show nor refute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from shared.rl.bars import NS_PER_S, Bars

SynthKind = Literal["regime_momentum", "mean_reverting"]
KINDS: tuple[str, ...] = ("regime_momentum", "mean_reverting")
START_NS = 1_700_000_000 * NS_PER_S


@dataclass(frozen=True)
class SynthMarket:
    """Bars plus the oracle's position for each bar (decided from hidden state known at that bar)."""

    kind: str
    bars: Bars
    oracle_positions: NDArray[np.float64]


def _bars_from_log_price(log_price: NDArray[np.float64], rng: np.random.Generator, bar_seconds: float) -> Bars:
    close = 100.0 * np.exp(log_price)
    open_ = np.r_[close[0], close[:-1]]
    wiggle = np.abs(rng.normal(0.0, 0.0005, len(close)))
    high = np.maximum(open_, close) * (1 + wiggle)
    low = np.minimum(open_, close) * (1 - wiggle)
    volume = rng.lognormal(np.log(50_000.0), 0.3, len(close))  # deep market: impact stays small
    ts = START_NS + np.arange(len(close), dtype=np.int64) * int(bar_seconds * NS_PER_S)
    return Bars(ts=ts, open=open_, high=high, low=low, close=close, volume=volume)


def regime_momentum(
    n: int, seed: int, persistence: float = 0.995, drift: float = 0.0006, sigma: float = 0.002
) -> SynthMarket:
    """Hidden up/down regimes (Markov, mean length 1/(1-persistence) bars) with drift +/-`drift` per bar."""
    rng = np.random.default_rng(seed)
    flips = rng.random(n) > persistence
    regime = np.where(np.cumsum(flips) % 2 == 0, 1.0, -1.0)
    log_ret = regime * drift + rng.normal(0.0, sigma, n)
    log_ret[0] = 0.0
    # the oracle holds the regime in force at bar t (it cannot foresee a flip at t+1)
    return SynthMarket("regime_momentum", _bars_from_log_price(np.cumsum(log_ret), rng, 60.0), regime)


def mean_reverting(
    n: int, seed: int, theta: float = 0.05, sigma: float = 0.003, band: float = 1.0, drift: float = 0.0
) -> SynthMarket:
    """Log price follows an Ornstein-Uhlenbeck process around a mean that moves `drift` per bar.

    The oracle knows the mean: it fades a deviation beyond `band` stationary stds and holds
    until the price crosses the mean (hysteresis keeps its costs down).
    """
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    noise = rng.normal(0.0, sigma, n)
    for i in range(1, n):
        x[i] = x[i - 1] * (1 - theta) + noise[i]
    std = sigma / np.sqrt(2 * theta - theta * theta)
    oracle = np.zeros(n)
    held = 0.0
    for i, value in enumerate(x.tolist()):
        if value > band * std:
            held = -1.0
        elif value < -band * std:
            held = 1.0
        elif held * value > 0:  # crossed the mean: the deviation is gone
            held = 0.0
        oracle[i] = held
    trend = drift * np.arange(n, dtype=np.float64)
    return SynthMarket("mean_reverting", _bars_from_log_price(x + trend, rng, 60.0), oracle)


def make_market(kind: str, n: int, seed: int) -> SynthMarket:
    """Build a synthetic market by name."""
    if kind == "regime_momentum":
        return regime_momentum(n, seed)
    if kind == "mean_reverting":
        return mean_reverting(n, seed)
    raise ValueError(f"synth: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def write_csv(bars: Bars, path: str) -> None:
    """Write bars as `date,open,high,low,close,volume` CSV (the format `load_bars` reads back)."""
    seconds = bars.ts // NS_PER_S
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("date,open,high,low,close,volume\n")
        columns = (bars.open, bars.high, bars.low, bars.close, bars.volume)
        for row in zip(seconds.tolist(), *(c.tolist() for c in columns), strict=True):
            fh.write(f"{row[0]},{row[1]!r},{row[2]!r},{row[3]!r},{row[4]!r},{row[5]!r}\n")


@dataclass(frozen=True)
class LeadLagMarkets:
    """Time-aligned bars of several markets where the first leads the others by one bar.

    `rule_weights[t]` is the known-structure rule's target weight per market at bar t: hold each
    follower in the direction of the leader's last bar return (the follower repeats `beta` of it
    one bar later), only when that move is worth the round-trip costs; the leader itself is
    unpredictable and left flat.
    """

    markets: list[tuple[str, str]]
    bars: list[Bars]
    rule_weights: NDArray[np.float64]  # (n, N)


LEAD_LAG_MARKETS = [("coinbase", "BTC/USD"), ("binance_futures", "BTC/USDT")]


def lead_lag(
    n: int,
    seed: int,
    markets: list[tuple[str, str]] | None = None,
    beta: float = 0.8,
    sigma_lead: float = 0.004,
    sigma_follow: float = 0.001,
    deadband: float = 1.0,
) -> LeadLagMarkets:
    """Leader: i.i.d. log returns; each follower: `beta` x the leader's previous return plus its own noise.

    The rule goes long/short a follower by the sign of the leader's latest return when it exceeds
    `deadband` leader standard deviations, and otherwise keeps what it holds.
    """
    markets = list(markets or LEAD_LAG_MARKETS)
    rng = np.random.default_rng(seed)
    lead = rng.normal(0.0, sigma_lead, n)
    lead[0] = 0.0
    bars = [_bars_from_log_price(np.cumsum(lead), rng, 60.0)]
    rule = np.zeros((n, len(markets)))
    held = 0.0
    for t, r in enumerate(lead.tolist()):
        if abs(r) > deadband * sigma_lead:
            held = float(np.sign(r))
        rule[t, 1:] = held
    for _ in markets[1:]:
        follow = np.zeros(n)
        follow[1:] = beta * lead[:-1] + rng.normal(0.0, sigma_follow, n - 1)
        bars.append(_bars_from_log_price(np.cumsum(follow), rng, 60.0))
    return LeadLagMarkets(markets, bars, rule)


def write_market_dir(synth: LeadLagMarkets, directory: str) -> None:
    """Write one `<exchange>__<BASE>-<QUOTE>.csv` per market (what `--data DIR` reads)."""
    for (exchange, symbol), bars in zip(synth.markets, synth.bars, strict=True):
        write_csv(bars, f"{directory}/{exchange}__{symbol.replace('/', '-')}.csv")
