"""The RL strategy: trade the book of promoted policies on the executor's market data.

The book holds one policy per market set (``shared.rl.book``): a single-market policy trades its
market, a portfolio policy all of its markets, possibly on several venues. Each builds bars from
`md:trades` exactly as the trainer did (same bar length and clock, from the policy's
`tradewind.json`), and at each bar all its markets have closed gets target weights: a fraction of
the capital the strategy gives that market's venue (``venue_capital``: at most `rl_notional` per
venue and quote, and no more than what the strategy holds there plus the venue's free cash). Market
orders move each market whose target changed there (as in the env, a held target is not rebalanced
as prices drift), each sized by the market's lot rules as the env sizes them (`shared.rl.lots`: rounded
towards zero to the lot step, none below the minimum quantity or notional); perpetuals may go short (as
in the env), spot only with `rl_allow_short`.

What the strategy holds is counted from fills (``strategies.holdings``): a rejected or partly filled
order counts for what it filled. At start the holdings are restored from the stored fills before any
policy loads, so a restart never buys twice.

A policy is data: only its weights-only `actor.npz` is loaded (numpy, `allow_pickle=False`), only
from under the policy directory (`executor.policy_dir`, default `trainer.policy_dir`), and only when
its bytes hash to the sha256 the registry recorded at promotion (`<dir>#sha256=<hex>`, as
`PolicyUpdate.checkpoint_uri` and `promoted_per_market` give it); anything else is refused and logged.

A new policy (a `PolicyUpdate`, or the book of promoted policies at start) loads off the event loop
and then takes its market set's seat in one step: ticks that arrive while it loads keep going to the
old policy, so none is dropped and no bar is built twice. A policy whose markets overlap another
seat's replaces it (one policy trades a market at a time: the latest promoted).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import ClassVar

from services.executor.gateway import OPEN_STATUSES
from services.executor.store import UNSENT_STATUSES, ExecutorStore
from services.executor.strategies.base import Feed, StrategyBase, StrategyContext
from services.executor.strategies.holdings import Holdings
from shared.rl.book import (
    Decision,
    Market,
    PortfolioTrader,
    Seat,
    SingleMarketTrader,
    Trader,
    load_policy,
    seat,
)
from shared.rl.lots import NO_LOTS, LotRule, order_legs
from shared.rl.policy import CheckpointPolicy, PolicyError
from shared.rl.portfolio import PortfolioPolicy, is_perpetual
from shared.schemas import OrderEvent, OrderIntent, PolicyUpdate, Trade, streams
from shared.sections.executor import ExecutorSettings
from shared.storage import policies

log = logging.getLogger(__name__)

DECISIONS_KEPT = 10_000
TARGET_EPS = 1e-9  # a target that moved less than this is held, not traded
REPORT_WAIT_BARS = 10  # bars a market waits for its open order's final report before it trades anyway

Loader = Callable[[str], CheckpointPolicy | PortfolioPolicy]


def build(ctx: StrategyContext) -> RLStrategy | None:
    """The book of promoted policies when ``executor.rl_enabled`` (default: in replay mode only)."""
    settings, cfg = ctx.settings, ctx.settings.executor
    if not (cfg.rl_enabled if cfg.rl_enabled is not None else settings.mode == "replay"):
        return None
    bar_clock = cfg.rl_bar_clock or ("receive" if settings.mode == "replay" else None)
    return RLStrategy(cfg, ctx.run_id, ctx.free_balance, bar_clock=bar_clock, store=ctx.store)


def update_markets(update: PolicyUpdate) -> tuple[Market, ...]:
    """The market set a policy update names (its `markets`, or its one exchange/symbol)."""
    return policies.markets_of(update.exchange, update.symbol, update.markets)


class RLStrategy(StrategyBase):
    """The promoted policies trading their markets on paper; idle until a policy is loaded."""

    name = "rl"
    feeds: ClassVar[frozenset[Feed]] = frozenset({"trade", "order_event", "policy"})

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
        self.store = store  # holdings and the promoted book at start; None: start from nothing
        self._restored = asyncio.Event()  # set once the holdings are restored: no policy loads before
        self._stopped = False
        root = settings.policy_dir or "var/policies"
        self.loader: Loader = loader or (lambda uri: load_policy(uri, root))
        self.bar_clock = bar_clock  # overrides the policy's clock (receive time for looped replays)
        self.seats: dict[tuple[Market, ...], Seat] = {}  # market set -> its policy
        self.by_market: dict[Market, Seat] = {}  # each traded market -> its seat
        self.active: Seat | None = None  # the seat loaded last
        self.holdings = Holdings()
        self.targets: dict[Market, float] = {}  # the weight last chosen per market: part of the observation
        self._due: dict[Market, int] = {}  # markets whose target changed, not traded to yet -> bars waited
        self.prices: dict[Market, float] = {}  # the latest closed bar's close per traded market
        self.decisions: deque[Decision] = deque(maxlen=DECISIONS_KEPT)
        self.ticks = 0
        self._undecided: set[str] = set()  # policies that failed to decide once (logged once)
        self._seq = itertools.count(1)

    @property
    def held(self) -> dict[Market, float]:
        """Base amount held per market from fills (< 0: short)."""
        return self.holdings.held

    async def start(self) -> list[OrderIntent]:
        """Restore what this strategy holds, then trade the promoted book (a market set whose update came
        first keeps that policy)."""
        if self.store is None:
            self._restored.set()
            return []
        held = await self.store.held_by_strategy(self.name)  # before any policy trades
        pending = await self.store.orders_in((*OPEN_STATUSES, *UNSENT_STATUSES, "unknown"))
        mine = [o for o in pending if o.intent.strategy == self.name]
        fees_taken = await self.store.base_fee_fills([o.intent.client_order_id for o in mine])
        self.holdings.restore(held, mine, fees_taken)
        self._restored.set()
        book = await policies.promoted_per_market(self.store.db)
        if not book:
            log.info("rl: no promoted policy yet; idle until one is published on %s", streams.POLICY_UPDATES)
        for row in book:
            await self.load(row["checkpoint_uri"], row["id"], markets=row["markets"], replace_others=False)
        return []

    async def on_policy(self, update: PolicyUpdate) -> list[OrderIntent]:
        await self._restored.wait()  # an update published while `start` restores waits for it
        if self._stopped:
            return []  # released by `stop`: what is held may be unknown, so nothing loads
        await self.load(update.checkpoint_uri, update.policy_id, markets=update_markets(update))
        return []

    def on_order_event(self, event: OrderEvent) -> list[OrderIntent]:
        self.holdings.on_event(event)  # this strategy's orders only; the rest are ignored
        return []

    async def stop(self) -> None:
        self._stopped = True
        self._restored.set()  # release an update waiting on a restore that failed

    async def load(
        self,
        checkpoint_uri: str,
        policy_id: str,
        exchange: str | None = None,
        symbol: str | None = None,
        *,
        markets: Sequence[Market] = (),
        replace_others: bool = True,
    ) -> bool:
        """Load a policy off the event loop, then seat it; False (the book unchanged) when it cannot be used.

        ``markets`` (or ``exchange``/``symbol``) is the market set the registry promoted it for; a portfolio
        policy's own markets must be that set. With ``replace_others`` False (the book at start) it is not
        seated over a seat that shares a market with it (an update that came first)."""
        named = policies.markets_of(exchange, symbol, markets)
        try:
            policy = await asyncio.to_thread(self.loader, checkpoint_uri)
            trader = self._trader(policy, policy_id, named)
            clock = self.bar_clock or trader.bar_clock or "exchange"
            receive, window = clock == "receive", self.cfg.rl_window_bars
            new = seat(trader, policy_id, self.cfg.rl_bar_seconds, receive, window, self.seats)
        except (PolicyError, OSError, ValueError, KeyError) as exc:
            log.error("rl: policy %s (%s) cannot be used, keeping the book: %s", policy_id, checkpoint_uri, exc)
            return False
        # From here to the end, no await: the book changes in one step between two ticks.
        displaced = {s.key: s for m in new.markets if (s := self.by_market.get(m)) is not None and s.key != new.key}
        if displaced and not replace_others:
            log.info("rl: policy %s not seated: a later policy trades %s", policy_id, sorted(displaced))
            return False
        old = self.seats.get(new.key)
        for key, other in displaced.items():
            del self.seats[key]
            for m in other.markets:
                self.by_market.pop(m, None)
        self.seats[new.key] = new
        for m in new.markets:
            self.by_market[m] = new
        self.active = new
        log.info(
            "rl: trading policy %s (%s) on %s with %gs bars (%s clock)%s",
            policy_id,
            trader.name,
            ", ".join(f"{e} {s}" for e, s in new.markets),
            new.bar_seconds,
            "receive" if new.receive_clock else "exchange",
            "".join(f", replacing {s.policy_id}" for s in ([old] if old else []) + list(displaced.values())),
        )
        return True

    def _trader(self, policy: CheckpointPolicy | PortfolioPolicy, policy_id: str, named: tuple[Market, ...]) -> Trader:
        if isinstance(policy, PortfolioPolicy):
            if named and policies.market_set(policy.markets) != named:
                raise PolicyError(f"{policy.path}: trained on {sorted(policy.markets)}, promoted for {list(named)}")
            return PortfolioTrader(policy, policy_id, self.decisions)
        if len(named) != 1:
            raise PolicyError(f"{policy.path}: a single-market policy promoted for {list(named) or 'no market'}")
        short = self.may_short(named[0])
        return SingleMarketTrader(policy, policy_id, named[0], short, self.targets, self.decisions)

    def may_short(self, market: Market) -> bool:
        """Perpetuals short natively (as in the portfolio env); spot only through margin, when allowed."""
        return self.cfg.rl_allow_short or is_perpetual(market[0])

    def on_trade(self, trade: Trade) -> list[OrderIntent]:
        """Fold one trade into its policy's bars; at a bar all its markets closed, trade to the new targets."""
        market = (trade.exchange, trade.symbol)
        s = self.by_market.get(market)
        if s is None:
            return []
        self.ticks += 1
        bars = s.bars[market]
        before = bars.closed_total
        bars.add(trade.recv_ts if s.receive_clock else trade.ts, trade.price, trade.amount, trade.side == "buy")
        if bars.closed_total == before:
            return []
        ready = s.aligned()
        if ready is None:
            return []
        built, fresh = ready
        for m, b in built.items():
            self.prices[m] = float(b.close[-1])
        try:
            targets = s.trader.decide(built, fresh, self._weights(s))
        except (PolicyError, ValueError) as exc:  # e.g. bars the policy cannot use yet: wait for more
            level = logging.WARNING if s.policy_id not in self._undecided else logging.DEBUG  # once per policy
            self._undecided.add(s.policy_id)
            log.log(level, "rl: policy %s made no decision at this bar: %s", s.policy_id, exc)
            return []
        return self._rebalance(s, targets, trade.recv_ts)

    def _weights(self, s: Seat) -> dict[Market, float]:
        """The weights this strategy holds per market of a seat, from fills, of its venue's capital."""
        out = {}
        for m in s.markets:
            capital = self.venue_capital(m[0], m[1].partition("/")[2], s)
            price = self.prices.get(m)
            out[m] = self.holdings.held.get(m, 0.0) * price / capital if price and capital > 0 else 0.0
        return out

    def venue_capital(self, venue: str, quote: str, s: Seat) -> float:
        """What the strategy trades with on one venue, in one quote asset: its positions there (at the last
        close) plus the venue's free cash, at most `rl_notional`; `rl_notional` when the cash is unknown."""
        free = self.free_balance(venue, quote) if self.free_balance else None
        if free is None:
            return self.cfg.rl_notional
        value = sum(
            self.holdings.position(m) * self.prices.get(m, 0.0)
            for m in s.markets
            if m[0] == venue and m[1].partition("/")[2] == quote
        )
        return max(min(self.cfg.rl_notional, value + free), 0.0)

    def _rebalance(self, s: Seat, targets: dict[Market, float], now: int) -> list[OrderIntent]:
        """Orders that move each market whose target changed to target x its venue's capital: sells first,
        so a venue's buys see the cash it has. A market with an order of ours still open trades to its
        target at the first bar after that order's final report: sized against what may still fill, a sell
        would offer coins not received yet (the venue refuses it: insufficient balance). After
        ``REPORT_WAIT_BARS`` bars without that report it trades anyway (and says so): a report that never
        comes must not stop a market for good."""
        moves: list[tuple[Market, float]] = []
        for m in s.markets:
            weight = targets.get(m, self.targets.get(m, 0.0))
            if not self.may_short(m):
                weight = max(weight, 0.0)
            previous = self.targets.get(m, 0.0)
            self.targets[m] = weight
            if abs(weight - previous) > TARGET_EPS:
                self._due[m] = 0
            if m not in self._due:
                continue
            if self.holdings.busy(m) and self._due[m] < REPORT_WAIT_BARS:
                self._due[m] += 1
                continue
            if self._due.pop(m) >= REPORT_WAIT_BARS:
                log.warning("rl: %s %s trades with an order still open after %d bars", *m, REPORT_WAIT_BARS)
            capital = self.venue_capital(m[0], m[1].partition("/")[2], s)
            moves.append((m, weight * capital / self.prices[m] - self.holdings.position(m)))
        intents: list[OrderIntent] = []
        for m, delta in sorted(moves, key=lambda move: move[1] > 0):
            intents += self._orders(m, delta, self.prices[m], now, s.trader.lots.get(m, NO_LOTS))
        return intents

    def _orders(self, key: Market, delta: float, price: float, now: int, lot: LotRule) -> list[OrderIntent]:
        """Market orders for a change of `delta` base: cover or sell spot first, then margin; the change
        and each order rounded towards zero to the lot step, none below the minimum quantity or notional."""
        exchange, symbol = key
        quote = symbol.partition("/")[2]
        free = self.free_balance(exchange, quote) if delta > 0 and self.free_balance else None
        intents = []
        for side, amount, margin in order_legs(delta, self.holdings.position(key), price, free, lot):
            if amount * price < max(self.cfg.rl_min_order, 1e-12):
                continue
            intent = OrderIntent(
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
            self.holdings.sent(intent)  # in flight until its reports say what it filled
            intents.append(intent)
        return intents
