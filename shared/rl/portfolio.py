"""One policy over several markets, possibly on different venues: what training and the executor share.

A portfolio policy sees N time-aligned markets at once. Its observation at bar t is
`[features[t], weights (N), weights x last-bar return x PNL_FEATURE_SCALE (N)]`, where `features`
are each market's own causal features (`compute_features`, time-of-day only once) followed by
cross-market ones: every market's 1-bar log return at lags 1.. (`lags`), and the log price gap
between markets of the same base asset (a venue spread, or a spot-futures basis when one side is a
perpetual). Its action is a target weight per market: the fraction of *that market's venue's*
equity to hold (each venue keeps its own cash; nothing moves between venues). Spot markets are
long-only unless `spot_margin`; perpetuals (exchange names ending in `_futures`) may go short.
A venue's weights are scaled down together so their gross sum stays within 1.

The executor uses it like this (the contract with `services/executor`)::

    policy = load_portfolio_policy(spec, root, require_sha=True)
    policy.markets        # [(exchange, symbol), ...] in action order (tradewind.json "markets")
    policy.bar_seconds    # the bar length it was trained on
    policy.warmup_bars    # bars per market `decide` needs at least (more: closer to training's
                          # normalisation, which follows NORM_HALFLIFE bars; pass HISTORY_BARS)
    policy.decide(bars_by_market)  # {(exchange, symbol): target weight}, from the latest closed bars

`decide` remembers the weights it last returned and feeds them back as the held weights; pass
`held=` (weights measured from fills) to override.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.rl.bars import Bars
from shared.rl.costs import CostModel
from shared.rl.env_config import PNL_FEATURE_SCALE
from shared.rl.features import NORM_HALFLIFE, WARMUP, _normalise, compute_features
from shared.rl.lots import NO_LOTS, LotRule
from shared.rl.policy import PolicyError
from shared.rl.weights import NumpyNet, decode_net, read_weights

Market = tuple[str, str]  # (exchange, symbol)
MAX_DISCRETE_MARKETS = 4
HISTORY_BARS = 2 * NORM_HALFLIFE  # bars that reproduce training's feature normalisation closely
SECONDS_PER_8H = 8 * 3_600


def is_perpetual(exchange: str) -> bool:
    """Perpetual futures venues (USD-M) are named `<venue>_futures`; they short and pay funding."""
    return exchange.endswith("_futures")


def base_asset(symbol: str) -> str:
    return symbol.split("/", 1)[0].upper()


@dataclass(frozen=True)
class PortfolioConfig:
    """How the portfolio env trades; stored in `tradewind.json` under `env`.

    Funding: a long perpetual position pays `funding_rate_8h` per 8 hours of its notional (a short
    receives it) unless recorded rates are given with the data; borrowing for a spot short (margin)
    pays `borrow_rate_annual`. Both are charged bar by bar. `lots` holds each market's lot rules
    (keyed `exchange:BASE/QUOTE`; a market without one trades any amount): the env and the
    executor size every order by them (`shared.rl.lots`).
    """

    levels: tuple[float, ...] = (-1.0, 0.0, 1.0)  # DQN: per-market levels of the joint action
    continuous: bool = True
    spot_margin: bool = False
    episode_len: int = 1_024
    reward_scale: float = 100.0
    initial_cash: float = 10_000.0  # per venue
    cost: CostModel = field(default_factory=CostModel)
    venue_costs: dict[str, CostModel] = field(default_factory=dict)  # per-venue fees; else `cost`
    borrow_rate_annual: float = 0.05
    funding_rate_8h: float = 0.0001  # the stated constant when no recorded rates are given
    lags: tuple[int, ...] = (1, 2)
    lots: dict[str, LotRule] = field(default_factory=dict)  # "exchange:BASE/QUOTE" -> lot rules
    start: int = 0
    stop: int | None = None

    def __post_init__(self) -> None:
        if not self.levels or any(abs(x) > 1.0 for x in self.levels):
            raise ValueError(f"PortfolioConfig.levels: expected positions within [-1, 1], found {self.levels}")
        if any(lag < 1 for lag in self.lags):
            raise ValueError(f"PortfolioConfig.lags: expected lags >= 1, found {self.lags}")

    def cost_for(self, exchange: str) -> CostModel:
        return self.venue_costs.get(exchange, self.cost)

    def lot_for(self, market: Market) -> LotRule:
        return self.lots.get(label(market), NO_LOTS)

    def can_short(self, exchange: str) -> bool:
        return is_perpetual(exchange) or self.spot_margin

    def with_range(self, start: int, stop: int | None) -> PortfolioConfig:
        return replace(self, start=start, stop=stop)

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["cost"] = self.cost.to_dict()
        raw["venue_costs"] = {k: v.to_dict() for k, v in self.venue_costs.items()}
        raw["lots"] = {k: v.to_dict() for k, v in self.lots.items()}
        raw["levels"], raw["lags"] = list(self.levels), list(self.lags)
        return raw

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PortfolioConfig:
        d = dict(raw)
        d["cost"] = CostModel.from_dict(d["cost"])
        d["venue_costs"] = {k: CostModel.from_dict(v) for k, v in d.get("venue_costs", {}).items()}
        d["lots"] = {k: LotRule.from_dict(v) for k, v in d.get("lots", {}).items()}
        d["levels"], d["lags"] = tuple(d["levels"]), tuple(d["lags"])
        return cls(**d)


@dataclass(frozen=True)
class PortfolioData:
    """What the portfolio env and backtest read: one feature matrix plus prices per market."""

    markets: tuple[Market, ...]
    names: tuple[str, ...]
    features: NDArray[np.float32]  # (T, F)
    close: NDArray[np.float64]  # (T, N)
    bar_notional: NDArray[np.float64]  # (T, N)
    funding: NDArray[np.float64]  # (T, N): fraction of a long's notional paid over bar t -> t+1
    ts: NDArray[np.int64]
    bar_seconds: float

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def n_markets(self) -> int:
        return len(self.markets)

    @property
    def last_return(self) -> NDArray[np.float64]:
        r = np.zeros_like(self.close)
        r[1:] = self.close[1:] / self.close[:-1] - 1.0
        return r

    @property
    def venues(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ex for ex, _ in self.markets))

    @property
    def venue_index(self) -> NDArray[np.int64]:
        order = self.venues
        return np.array([order.index(ex) for ex, _ in self.markets], dtype=np.int64)


def label(market: Market) -> str:
    return f"{market[0]}:{market[1]}"


def build_portfolio_data(
    bars: Sequence[Bars],
    markets: Sequence[Market],
    *,
    time_features: str = "day",
    lags: Sequence[int] = (1, 2),
    funding_rate_8h: float = 0.0001,
    funding: Mapping[Market, NDArray[np.float64]] | None = None,
) -> PortfolioData:
    """The causal feature matrix of N time-aligned markets (every column at t uses bars <= t only).

    `funding` gives recorded per-bar funding fractions for some perpetuals (aligned with the
    bars); other perpetuals pay the constant `funding_rate_8h`, spot markets none.
    """
    if len(bars) != len(markets) or not bars:
        raise ValueError(f"portfolio: expected one Bars per market, found {len(bars)} for {len(markets)} markets")
    ts = bars[0].ts
    for b, m in zip(bars, markets, strict=True):
        if len(b.ts) != len(ts) or not np.array_equal(b.ts, ts):
            raise ValueError(
                f"portfolio: {label(m)} has bars at other times than {label(markets[0])} "
                f"({len(b.ts)} vs {len(ts)} bars); expected the same timestamps in every market"
            )
    columns: list[NDArray[np.float32]] = []
    names: list[str] = []
    for i, (b, m) in enumerate(zip(bars, markets, strict=True)):
        md = compute_features(b, time_features=time_features if i == 0 else "none")
        columns.append(md.features)
        names.extend(f"{label(m)}:{n}" for n in md.names)
    log_close = np.log(np.column_stack([b.close for b in bars]))
    r1 = np.zeros_like(log_close)
    r1[1:] = np.diff(log_close, axis=0)
    cross: dict[str, NDArray[np.float64]] = {}
    for j, m in enumerate(markets):
        for lag in lags:
            lagged = np.zeros(len(ts))
            lagged[lag:] = r1[:-lag, j]
            cross[f"{label(m)}:ret_1_lag{lag}"] = _normalise(lagged)
    for i in range(len(markets)):
        for j in range(i + 1, len(markets)):
            a, b_ = markets[i], markets[j]
            if base_asset(a[1]) == base_asset(b_[1]) and a != b_:
                kind = "basis" if is_perpetual(a[0]) != is_perpetual(b_[0]) else "spread"
                cross[f"{kind}:{label(a)}-{label(b_)}"] = _normalise(log_close[:, i] - log_close[:, j])
    if cross:
        columns.append(np.column_stack(list(cross.values())).astype(np.float32))
        names.extend(cross)
    bar_seconds = bars[0].bar_seconds
    fund = np.zeros((len(ts), len(markets)))
    for j, m in enumerate(markets):
        if funding is not None and m in funding:
            fund[:, j] = np.asarray(funding[m], dtype=np.float64)
        elif is_perpetual(m[0]):
            fund[:, j] = funding_rate_8h * bar_seconds / SECONDS_PER_8H
    return PortfolioData(
        markets=tuple(markets),
        names=tuple(names),
        features=np.hstack(columns).astype(np.float32),
        close=np.exp(log_close),
        bar_notional=np.column_stack([b.notional for b in bars]).astype(np.float64),
        funding=fund,
        ts=ts,
        bar_seconds=bar_seconds,
    )


def observation_size(data: PortfolioData) -> int:
    return data.features.shape[1] + 2 * data.n_markets


def observe(
    features: NDArray[np.float32], weights: NDArray[np.float64], last: NDArray[np.float64]
) -> NDArray[np.float32]:
    """One observation: the bar's features, the weights held and their last-bar PnL."""
    n = len(weights)
    obs = np.empty(features.shape[-1] + 2 * n, dtype=np.float32)
    obs[: -2 * n] = features
    obs[-2 * n : -n] = weights
    obs[-n:] = weights * last * PNL_FEATURE_SCALE
    return obs


def weight_bounds(
    markets: Sequence[Market], config: PortfolioConfig
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-market (low, high) target weights: -1 where the market may short, else 0; high 1."""
    low = np.array([-1.0 if config.can_short(ex) else 0.0 for ex, _ in markets])
    return low, np.ones(len(markets))


def joint_size(n_markets: int, config: PortfolioConfig) -> int:
    """The joint Discrete action's size for DQN: len(levels) ** N (N <= MAX_DISCRETE_MARKETS)."""
    if n_markets > MAX_DISCRETE_MARKETS:
        raise ValueError(
            f"portfolio: a joint discrete action covers at most {MAX_DISCRETE_MARKETS} markets, found {n_markets}"
        )
    return len(config.levels) ** n_markets


def action_to_weights(action: Any, markets: Sequence[Market], config: PortfolioConfig) -> NDArray[np.float64]:
    """Target weights per market for one action (a Box vector, or a joint Discrete index).

    The joint index's base-k digits (market 0 = least significant) pick each market's level;
    a short level on a market that cannot short means flat. Weights are clipped to what the
    venue allows, then each venue's gross sum is scaled down to at most 1.
    """
    n = len(markets)
    low, high = weight_bounds(markets, config)
    if config.continuous:
        w = np.asarray(action, dtype=np.float64).reshape(-1)[:n]
    else:
        k = len(config.levels)
        index = int(np.asarray(action).reshape(-1)[0])
        digits = [(index // k**i) % k for i in range(n)]
        w = np.array([config.levels[d] for d in digits], dtype=np.float64)
    w = np.clip(np.nan_to_num(w), low, high)
    venues = [ex for ex, _ in markets]
    for venue in set(venues):
        idx = [i for i, ex in enumerate(venues) if ex == venue]
        gross = float(np.abs(w[idx]).sum())
        if gross > 1.0:
            w[idx] = w[idx] / gross
    return w


class NotEnoughBars(PolicyError):
    """`decide` was given fewer bars than the policy's `warmup_bars` (or misaligned ones)."""


class PortfolioPolicy:
    """A portfolio policy run from `actor.npz`: numpy only, the same observations as training."""

    def __init__(self, net: NumpyNet, meta: dict[str, Any], path: Path, sha256: str) -> None:
        self.net = net
        self.meta = meta
        self.path = path
        self.sha256 = sha256
        self.name = f"{meta['algo']}:{path.name}"
        self.markets: list[Market] = [(m["exchange"], m["symbol"]) for m in meta["markets"]]
        self.bar_seconds = float(meta["bar_seconds"])
        self.config = PortfolioConfig.from_dict(meta["env"])
        self.feature_options: dict[str, Any] = dict(meta.get("features", {}))
        self.warmup_bars = int(meta.get("warmup_bars", WARMUP + max(self.config.lags, default=0) + 1))
        self.held = np.zeros(len(self.markets))

    def act(self, obs: NDArray[np.float32]) -> NDArray[np.float64]:
        """Target weights (B, N) for a batch of observations (before the venue limits)."""
        out = self.net.forward(np.asarray(obs, dtype=np.float32))
        n = len(self.markets)
        if self.config.continuous:  # diagonal Gaussian: [means (N), log_stds (N)] -> the means
            return out[:, :n].astype(np.float64)
        return out.argmax(axis=-1).astype(np.float64)[:, None]

    def weights(self, obs: NDArray[np.float32]) -> NDArray[np.float64]:
        """Venue-limited target weights (B, N) for a batch of observations."""
        return np.stack([action_to_weights(a, self.markets, self.config) for a in self.act(obs)])

    def data(self, bars_by_market: Mapping[Market, Bars]) -> PortfolioData:
        """The portfolio features of the given bars, aligned on the timestamps all markets share."""
        missing = [label(m) for m in self.markets if m not in bars_by_market]
        if missing:
            raise NotEnoughBars(f"{self.path}: no bars for {', '.join(missing)}")
        series = [bars_by_market[m] for m in self.markets]
        common = series[0].ts
        for b in series[1:]:
            common = np.intersect1d(common, b.ts)
        if len(common) < self.warmup_bars:
            raise NotEnoughBars(
                f"{self.path}: {len(common)} bars common to all {len(self.markets)} markets; needs {self.warmup_bars}"
            )
        aligned = [b.slice(0, len(b)) if np.array_equal(b.ts, common) else _take(b, common) for b in series]
        return build_portfolio_data(
            aligned,
            self.markets,
            time_features=str(self.feature_options.get("time_features", "day")),
            lags=self.config.lags,
            funding_rate_8h=self.config.funding_rate_8h,
        )

    def decide(
        self, bars_by_market: Mapping[Market, Bars], held: Mapping[Market, float] | None = None
    ) -> dict[Market, float]:
        """Target weights per market from the latest bar every market has closed."""
        data = self.data(bars_by_market)
        if tuple(self.meta["feature_names"]) != data.names:
            raise PolicyError(
                f"{self.path}: trained on features {self.meta['feature_names']}, the bars give {data.names}"
            )
        if held is not None:
            self.held = np.array([float(held.get(m, 0.0)) for m in self.markets])
        obs = observe(data.features[-1], self.held, data.last_return[-1])
        self.held = self.weights(obs[None, :])[0]
        return {m: float(w) for m, w in zip(self.markets, self.held, strict=True)}


def _take(bars: Bars, ts: NDArray[np.int64]) -> Bars:
    idx = np.searchsorted(bars.ts, ts)
    cols = {name: getattr(bars, name) for name in ("open", "high", "low", "close", "volume")}
    return Bars(ts=ts, **{k: v[idx] for k, v in cols.items()})


def load_portfolio_policy(spec: str | Path, root: str | Path | None, *, require_sha: bool = False) -> PortfolioPolicy:
    """Load a portfolio policy's `actor.npz` (path rules and sha256 check as `load_weights_policy`)."""
    data, where, digest = read_weights(spec, root, require_sha=require_sha)
    net, header = decode_net(data, where)
    meta = header["meta"]
    markets = meta.get("markets")
    if not markets:
        raise PolicyError(f"{where}: a single-market policy (no `markets` in its metadata); use load_weights_policy")
    expected = len(meta.get("feature_names", [])) + 2 * len(markets)
    if int(header["obs_size"]) != expected:
        raise PolicyError(
            f"{where}: obs_size {header['obs_size']} does not match its features and {len(markets)} markets"
        )
    return PortfolioPolicy(net, meta, where, digest)


def read_markets(meta_path: str | Path) -> list[Market]:
    """The markets (action order) recorded in a checkpoint's `tradewind.json`; [] for a single-market one."""
    meta = json.loads(Path(meta_path).read_text())
    return [(m["exchange"], m["symbol"]) for m in meta.get("markets", [])]
