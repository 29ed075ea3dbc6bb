"""The RL book: the policies traded, one seat per market set, each with its own bars.

The executor's RL strategy (``services.executor.strategies.rl``) trades it, and the risk simulator
(``services.risk.sim_strategies``) runs it in the loop: one decision rule for both.

Every policy, a single-market one (``CheckpointPolicy``, from `tradewind train --data FILE`) or a
portfolio one (``shared.rl.portfolio.PortfolioPolicy``, `--data DIR`), is seated behind one
``Trader`` shape: the markets it trades, its bar length and warm-up, and ``decide``, which returns a
target weight per market, a fraction of the capital the strategy gives that market's venue. A
single-market policy is the N=1 case: its position level is its weight.

Loading reads `actor.npz` once, under the policy directory and only if its bytes hash to the sha256
the registry recorded (`shared.rl.weights.read_weights`), and seats the policy its header describes:
a header with `markets` is a portfolio policy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from shared.rl.bars import Bars
from shared.rl.env_config import observe
from shared.rl.features import WARMUP, compute_features
from shared.rl.live_bars import LiveBars
from shared.rl.lots import LotRule
from shared.rl.policy import CheckpointPolicy, PolicyError
from shared.rl.portfolio import HISTORY_BARS, PortfolioPolicy, load_portfolio_policy
from shared.rl.weights import decode_net, decode_weights, read_weights

Market = tuple[str, str]  # (exchange, symbol)
Decision = tuple[str, int, Market, float]  # (policy id, bar ts, market, target weight)

OPTIONAL_COLUMNS = ("half_spread", "imbalance", "cross_spread")
TRADE_BAR_COLUMNS = frozenset({"imbalance"})  # the optional columns bars built from trades carry


class Trader(Protocol):
    """A seated policy: what the book calls at each bar every one of its markets has closed."""

    name: str
    markets: tuple[Market, ...]
    bar_seconds: float | None  # None: the policy does not say (settings must)
    bar_clock: str | None
    warmup_bars: int
    lots: Mapping[Market, LotRule]  # each market's lot rules (the ones it was trained with); absent: any amount

    def decide(self, bars: Mapping[Market, Bars], fresh: int, held: Mapping[Market, float]) -> dict[Market, float]:
        """Target weights after the latest closed bars; ``fresh`` bars closed since the last call, ``held``
        the weights measured from fills."""
        ...


def load_policy(spec: str, root: str | None, *, require_sha: bool = True) -> CheckpointPolicy | PortfolioPolicy:
    """The policy of a registered checkpoint (`<dir>#sha256=<hex>`): single-market or portfolio, as its
    sha-checked header says. ``root`` None, ``require_sha`` False: an operator's own file (the simulator)."""
    data, where, digest = read_weights(spec, root, require_sha=require_sha)
    _, header = decode_net(data, where)
    if header.get("meta", {}).get("markets"):
        return load_portfolio_policy(spec, root, require_sha=require_sha)
    return decode_weights(data, where, digest)


class SingleMarketTrader:
    """A single-market policy: at each closed bar, the observation it was trained on (features, the level
    held, its last-bar PnL) and the level it picks; the level held is the last one picked (as in the env)."""

    def __init__(
        self,
        policy: CheckpointPolicy,
        policy_id: str,
        market: Market,
        allow_short: bool,
        levels: Mapping[Market, float],
        decisions: deque[Decision],
    ) -> None:
        names = set(policy.meta["feature_names"])
        unavailable = sorted(c for c in OPTIONAL_COLUMNS if c in names and c not in TRADE_BAR_COLUMNS)
        if unavailable:
            raise PolicyError(f"{policy.path}: trained on {unavailable}, which bars built from trades do not carry")
        self.policy = policy
        self.policy_id = policy_id
        self.name = policy.name
        self.markets: tuple[Market, ...] = (market,)
        self.bar_seconds = policy.meta.get("bar_seconds")
        self.bar_clock = policy.meta.get("bar_clock")
        self.warmup_bars = WARMUP + 1
        self.drop_columns = tuple(c for c in OPTIONAL_COLUMNS if c not in names)  # trained without them
        self.allow_short = allow_short
        self.lots: Mapping[Market, LotRule] = {}
        self.levels = levels  # the strategy's last targets: the level held survives a hot swap
        self.decisions = decisions

    def decide(self, bars: Mapping[Market, Bars], fresh: int, held: Mapping[Market, float]) -> dict[Market, float]:
        (market,) = self.markets
        built = bars[market]
        if self.drop_columns:
            dropped: dict[str, Any] = dict.fromkeys(self.drop_columns)
            built = replace(built, **dropped)
        data = compute_features(built, **self.policy.feature_options)
        config = self.policy.env_config
        level = self.levels.get(market, 0.0)
        last_return = data.last_return
        for t in range(max(len(data) - fresh, WARMUP), len(data)):
            action = self.policy.act(observe(data.features[t], level, float(last_return[t]))[None, :])[0]
            if config.continuous:
                level = float(np.clip(action, config.min_position, 1.0))
            else:
                level = float(config.position_levels[int(action)])
            if not self.allow_short:
                level = max(level, 0.0)
            self.decisions.append((self.policy_id, int(data.ts[t]), market, level))
        return {market: level}


class PortfolioTrader:
    """A portfolio policy (``shared.rl.portfolio``): one decision per bar all its markets have closed, fed
    the weights the strategy holds (from fills)."""

    def __init__(self, policy: PortfolioPolicy, policy_id: str, decisions: deque[Decision]) -> None:
        self.policy = policy
        self.policy_id = policy_id
        self.name = policy.name
        self.markets = tuple(policy.markets)
        self.bar_seconds: float | None = policy.bar_seconds
        self.bar_clock: str | None = policy.meta.get("bar_clock")
        self.warmup_bars = max(policy.warmup_bars, 1)
        self.decisions = decisions
        self.lots: Mapping[Market, LotRule] = {m: policy.config.lot_for(m) for m in self.markets}
        names = [str(n).rsplit(":", 1)[-1] for n in policy.meta.get("feature_names", [])]
        self.drop_columns = tuple(c for c in OPTIONAL_COLUMNS if c not in names)  # trained without them

    def decide(self, bars: Mapping[Market, Bars], fresh: int, held: Mapping[Market, float]) -> dict[Market, float]:
        dropped: dict[str, Any] = dict.fromkeys(self.drop_columns)
        recent = {m: replace(b.slice(max(len(b) - HISTORY_BARS, 0), len(b)), **dropped) for m, b in bars.items()}
        targets = self.policy.decide(recent, held={m: held.get(m, 0.0) for m in self.markets})
        ts = int(min(int(b.ts[-1]) for b in bars.values()))
        self.decisions.extend((self.policy_id, ts, m, w) for m, w in targets.items())
        return targets


@dataclass(eq=False)
class Seat:
    """One policy in the book: its trader, the bars of its markets, the last bar it decided on."""

    policy_id: str
    trader: Trader
    bar_seconds: float
    receive_clock: bool
    bars: dict[Market, LiveBars] = field(default_factory=dict)
    decided_ts: int | None = None  # the latest aligned bar decided on

    @property
    def markets(self) -> tuple[Market, ...]:
        return self.trader.markets

    @property
    def key(self) -> tuple[Market, ...]:
        return tuple(sorted(self.markets))

    def aligned(self) -> tuple[dict[Market, Bars], int] | None:
        """Each market's closed bars and how many bars closed on every market since the last decision;
        None when a market has no bar yet or no new bar is common to all."""
        if any(len(b) == 0 for b in self.bars.values()):
            return None
        built = {m: b.bars() for m, b in self.bars.items()}
        last = min(int(b.ts[-1]) for b in built.values())
        if self.decided_ts is not None and last <= self.decided_ts:
            return None
        start = max(int(b.ts[0]) for b in built.values())
        ts = built[self.markets[0]].ts
        common = ts[(ts >= start) & (ts <= last)]  # every market's bars are gapless: the same on each
        if len(common) < self.trader.warmup_bars:
            return None
        fresh = len(common) if self.decided_ts is None else int(np.count_nonzero(common > self.decided_ts))
        self.decided_ts = last
        return built, fresh


def seat(
    trader: Trader,
    policy_id: str,
    bar_seconds: float | None,
    receive_clock: bool,
    window_bars: int,
    old: MutableMapping[tuple[Market, ...], Seat],
) -> Seat:
    """A seat for ``trader``, reusing the bars (and the last decided bar) of a seat it replaces when they
    are built the same way, so a hot swap neither drops nor repeats a bar."""
    seconds = bar_seconds or trader.bar_seconds
    if not seconds:
        raise PolicyError(
            f"{trader.name}: no bar_seconds in its tradewind.json; set TRADEWIND_EXECUTOR__RL_BAR_SECONDS"
        )
    new = Seat(policy_id, trader, float(seconds), receive_clock)
    previous = old.get(new.key)
    same = previous is not None and (previous.bar_seconds, previous.receive_clock) == (new.bar_seconds, receive_clock)
    for market in trader.markets:
        if same and previous is not None and market in previous.bars:
            new.bars[market] = previous.bars[market]
        else:
            new.bars[market] = LiveBars(new.bar_seconds, window_bars)
    if same and previous is not None:
        new.decided_ts = previous.decided_ts
    return new
