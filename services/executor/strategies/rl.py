"""The RL strategy: trade the promoted policy on the executor's market data.

It builds bars from `md:trades` exactly as the trainer did (same bar length and clock, from the
policy's `tradewind.json`), and at each bar close computes the observation the policy was trained
on (`shared.rl.env_config.observe`: features at that bar, the position held, its last-bar PnL),
asks the RLModule for the target position and sends market orders that move the paper position
there when the policy changes its target. A position of 1.0 is `rl_notional` of quote at the
bar the position is taken; spot only unless `rl_allow_short`.

A policy is data: only its weights-only `actor.npz` is loaded (numpy, `allow_pickle=False`), only
from under the policy directory (`executor.policy_dir`, default `trainer.policy_dir`), and only when
its bytes hash to the sha256 the registry recorded at promotion (`<dir>#sha256=<hex>`, as
`PolicyUpdate.checkpoint_uri` and `latest_promoted` give it); anything else is refused and logged.

A new policy (a `PolicyUpdate`, or the latest promoted row at start) loads off the event loop and
then replaces the active one in a single assignment: ticks that arrive while it loads keep going
to the old policy, so none is dropped and no bar is built twice. What the strategy holds is restored
from the stored orders before any policy loads, so a restart never buys twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from services.executor.store import ExecutorStore
from services.executor.strategies.base import Feed, StrategyBase, StrategyContext
from shared.rl.env_config import observe
from shared.rl.features import WARMUP, compute_features
from shared.rl.live_bars import LiveBars
from shared.rl.policy import CheckpointPolicy, PolicyError
from shared.rl.weights import load_weights_policy
from shared.schemas import OrderIntent, PolicyUpdate, Trade, streams
from shared.schemas.messages import MarginMode, Side
from shared.sections.executor import ExecutorSettings
from shared.storage import policies

log = logging.getLogger(__name__)

OPTIONAL_COLUMNS = ("half_spread", "imbalance", "cross_spread")
TRADE_BAR_COLUMNS = frozenset({"imbalance"})  # the optional columns bars built from trades carry
FUNDING_MARGIN = 1.01  # a buy needs its notional free plus room for the fee (the guard's fee buffer)
DECISIONS_KEPT = 10_000

Loader = Callable[[str], CheckpointPolicy]


@dataclass(frozen=True)
class ActivePolicy:
    """A loaded policy with the market and bars it trades; swapped in as one reference."""

    policy_id: str
    policy: CheckpointPolicy
    exchange: str
    symbol: str
    bar_seconds: float
    receive_clock: bool
    drop_columns: tuple[str, ...]  # optional bar columns the policy was trained without

    @property
    def bar_key(self) -> tuple[str, str, float, bool]:
        return self.exchange, self.symbol, self.bar_seconds, self.receive_clock


def activate(
    policy: CheckpointPolicy,
    policy_id: str,
    exchange: str,
    symbol: str,
    bar_seconds: float | None = None,
    bar_clock: str | None = None,
) -> ActivePolicy:
    """Check that live trade bars can feed `policy` and settle how they are built (the policy's bar
    length and clock unless overridden)."""
    names = set(policy.meta["feature_names"])
    unavailable = sorted(c for c in OPTIONAL_COLUMNS if c in names and c not in TRADE_BAR_COLUMNS)
    if unavailable:
        raise PolicyError(f"{policy.path}: trained on {unavailable}, which bars built from trades do not carry")
    seconds = bar_seconds or policy.meta.get("bar_seconds")
    if not seconds:
        raise PolicyError(
            f"{policy.path}: {policy.meta.get('algo')} checkpoint has no bar_seconds in tradewind.json; "
            "set TRADEWIND_EXECUTOR__RL_BAR_SECONDS"
        )
    return ActivePolicy(
        policy_id,
        policy,
        exchange,
        symbol,
        float(seconds),
        (bar_clock or policy.meta.get("bar_clock", "exchange")) == "receive",
        tuple(c for c in OPTIONAL_COLUMNS if c not in names),
    )


def build(ctx: StrategyContext) -> RLStrategy | None:
    """The promoted policy's trader when ``executor.rl_enabled`` (default: in replay mode only)."""
    settings, cfg = ctx.settings, ctx.settings.executor
    if not (cfg.rl_enabled if cfg.rl_enabled is not None else settings.mode == "replay"):
        return None
    bar_clock = cfg.rl_bar_clock or ("receive" if settings.mode == "replay" else None)
    return RLStrategy(cfg, ctx.run_id, ctx.free_balance, bar_clock=bar_clock, store=ctx.store)


class RLStrategy(StrategyBase):
    """One promoted policy trading one market on paper; idle until a policy is loaded."""

    name = "rl"
    feeds: ClassVar[frozenset[Feed]] = frozenset({"trade", "policy"})

    def __init__(
        self,
        settings: ExecutorSettings,
        run_id: str,
        free_balance: Callable[[str, str], float | None] | None = None,
        loader: Loader | None = None,
        bar_clock: str | None = None,
        store: ExecutorStore | None = None,
    ) -> None:
        self.cfg = settings
        self.run_id = run_id
        self.free_balance = free_balance  # (venue, asset) -> free amount; None (or it returns None): unchecked
        self.store = store  # held amounts and the promoted policy at start; None: start from nothing
        self._restored = asyncio.Event()  # set once `held` is restored: no policy loads before
        self._stopped = False
        root = settings.policy_dir or "var/policies"
        self.loader = loader or (lambda uri: load_weights_policy(uri, root, require_sha=True))
        self.bar_clock = bar_clock  # overrides the policy's clock (receive time for looped replays)
        self.active: ActivePolicy | None = None
        self.bars: LiveBars | None = None
        self.levels: dict[tuple[str, str], float] = {}  # the position last chosen: part of the observation
        self.held: dict[tuple[str, str], float] = {}  # base amount this strategy holds (< 0: short)
        self.decisions: deque[tuple[str, int, float]] = deque(maxlen=DECISIONS_KEPT)  # (policy, bar ts, level)
        self.ticks = 0
        self._seq = itertools.count(1)

    async def start(self) -> list[OrderIntent]:
        """Restore what this strategy holds, then trade the latest promoted policy unless an update came first."""
        if self.store is None:
            self._restored.set()
            return []
        self.held.update(await self.store.held_by_strategy(self.name))  # before any policy trades
        self._restored.set()
        row = await policies.latest_promoted(self.store.db)
        if row is None:
            log.info("rl: no promoted policy yet; idle until one is published on %s", streams.POLICY_UPDATES)
        elif self.active is None:
            await self.load(row["checkpoint_uri"], row["id"], row["exchange"], row["symbol"])
        return []

    async def on_policy(self, update: PolicyUpdate) -> list[OrderIntent]:
        await self._restored.wait()  # an update published while `start` restores waits for it
        if self._stopped:
            return []  # released by `stop`: what is held may be unknown, so nothing loads
        await self.load(update.checkpoint_uri, update.policy_id, update.exchange, update.symbol)
        return []

    async def stop(self) -> None:
        self._stopped = True
        self._restored.set()  # release an update waiting on a restore that failed

    async def load(self, checkpoint_uri: str, policy_id: str, exchange: str | None, symbol: str | None) -> bool:
        """Load a policy off the event loop, then swap it in; False (old policy kept) when it cannot be used."""
        if not exchange or not symbol:
            log.warning("rl: policy %s names no market (exchange/symbol); not loaded", policy_id)
            return False
        try:
            policy = await asyncio.to_thread(self.loader, checkpoint_uri)
            new = activate(policy, policy_id, exchange, symbol, self.cfg.rl_bar_seconds, self.bar_clock)
        except (PolicyError, OSError, ValueError, KeyError) as exc:
            log.error("rl: policy %s (%s) cannot be used, keeping the current one: %s", policy_id, checkpoint_uri, exc)
            return False
        old = self.active
        if old is None or old.bar_key != new.bar_key:
            self.bars = LiveBars(new.bar_seconds, self.cfg.rl_window_bars)
        self.active = new
        log.info(
            "rl: trading policy %s (%s) on %s %s with %gs bars (%s clock)%s",
            policy_id,
            new.policy.name,
            exchange,
            symbol,
            new.bar_seconds,
            "receive" if new.receive_clock else "exchange",
            f", replacing {old.policy_id}" if old else "",
        )
        return True

    def on_trade(self, trade: Trade) -> list[OrderIntent]:
        """Fold one trade into the bars; at a bar close, decide and return the orders to reach the target."""
        active, bars = self.active, self.bars
        if active is None or bars is None or trade.exchange != active.exchange or trade.symbol != active.symbol:
            return []
        self.ticks += 1
        before = bars.closed_total
        bars.add(trade.recv_ts if active.receive_clock else trade.ts, trade.price, trade.amount, trade.side == "buy")
        closed = bars.closed_total - before
        if closed == 0 or len(bars) <= WARMUP:
            return []
        return self._decide(active, bars, closed, trade.recv_ts)

    def _decide(self, active: ActivePolicy, bars: LiveBars, closed: int, now: int) -> list[OrderIntent]:
        built = bars.bars()
        if active.drop_columns:
            dropped: dict[str, Any] = dict.fromkeys(active.drop_columns)
            built = replace(built, **dropped)
        market = compute_features(built, **active.policy.feature_options)
        config = active.policy.env_config
        key = (active.exchange, active.symbol)
        level = previous = self.levels.get(key, 0.0)
        last_return = market.last_return
        for t in range(max(len(market) - closed, WARMUP), len(market)):
            action = active.policy.act(observe(market.features[t], level, float(last_return[t]))[None, :])[0]
            if config.continuous:
                level = float(np.clip(action, config.min_position, 1.0))
            else:
                level = float(config.position_levels[int(action)])
            if not self.cfg.rl_allow_short:
                level = max(level, 0.0)
            self.decisions.append((active.policy_id, int(market.ts[t]), level))
        self.levels[key] = level
        if level == previous:  # as in the env: a held level is not rebalanced as the price drifts
            return []
        return self._orders(key, level, float(market.close[-1]), now)

    def _orders(self, key: tuple[str, str], level: float, price: float, now: int) -> list[OrderIntent]:
        """Market orders from the held amount to `level` x rl_notional: cover or sell spot first, then margin."""
        exchange, symbol = key
        quote = symbol.partition("/")[2]
        held = self.held.get(key, 0.0)
        delta = level * self.cfg.rl_notional / price - held
        legs: list[tuple[Side, float, MarginMode | None]] = []
        if delta > 0:
            cover = min(delta, max(-held, 0.0))
            buy = delta - cover
            free = self.free_balance(exchange, quote) if buy > 0 and self.free_balance else None
            if free is not None:
                buy = min(buy, free / (price * FUNDING_MARGIN))
            legs += [("buy", cover, "cross"), ("buy", buy, None)]
        elif delta < 0:
            spot = min(-delta, max(held, 0.0))
            legs += [("sell", spot, None), ("sell", -delta - spot, "cross")]
        intents = []
        for side, amount, margin in legs:
            amount = float(f"{amount:.6g}")
            if amount * price < max(self.cfg.rl_min_order, 1e-12):
                continue
            self.held[key] = held = held + (amount if side == "buy" else -amount)
            intents.append(
                OrderIntent(
                    f"{self.name}-{self.run_id}-{next(self._seq)}",
                    exchange,
                    symbol,
                    side,
                    "market",
                    amount,
                    now,
                    strategy=self.name,
                    margin_mode=margin,
                )
            )
        return intents
