"""The trading strategies `tradewind risk simulate --with-strategies` runs in the loop, and their accounts.

``momentum``: the executor's baseline rule (``shared.momentum``), on every book update.
``rl``: an exported policy (`actor.npz`, `--policy`) seated in the RL book the executor trades
(``shared.rl.book``): bars from the replayed trades on the simulation's receive clock, a decision at
each closed bar, market orders to the new target (a fraction of ``rl_notional``, capped by the spot
quote it holds), sized by the policy's lot rules; spot is long only unless ``rl_allow_short``.
``arbitrage``: the executor's cycle strategy needs three or four markets on one venue that close a
loop of conversions (and its engine lives in the executor, which the risk service does not import);
it is recognised, not traded: the report says whether the data holds such a cycle.

Every strategy's orders pass the simulation's pre-trade guard and fill on its paper exchange;
``Ledger`` counts each one's orders, rejections, fills, fees and PnL from the fills it got.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from shared.paper.book import SimBook
from shared.rl.book import Decision, Market, PortfolioTrader, Seat, SingleMarketTrader, Trader, load_policy, seat
from shared.rl.lots import NO_LOTS, order_legs
from shared.rl.policy import CheckpointPolicy
from shared.rl.portfolio import PortfolioPolicy, is_perpetual
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, Trade
from shared.sections.executor import ExecutorSettings

NAMES = ("momentum", "rl", "arbitrage")
FINAL = frozenset({"filled", "rejected", "cancelled"})
RUN_ID = "sim"


class LoopStrategy(Protocol):
    """A trading strategy run inside the simulation (the executor's hooks: ``on_book``, ``on_order_event``)."""

    name: str

    def on_book(self, update: BookUpdate, book: SimBook) -> list[OrderIntent]: ...

    def on_order_event(self, event: OrderEvent) -> list[OrderIntent]: ...


@runtime_checkable
class TradeListener(Protocol):
    """A strategy that also reads the replayed trades (the RL policy builds its bars from them)."""

    def on_trade(self, trade: Trade) -> list[OrderIntent]: ...


@dataclass(frozen=True)
class LoopContext:
    """What a strategy is built on: the paper exchange's free spot balance ((venue, asset) -> amount), the
    inventory's market, and every market in the data."""

    free_balance: Callable[[str, str], float | None]
    venue: str
    symbol: str
    markets: tuple[Market, ...]


StrategyFactory = Callable[[LoopContext], list[LoopStrategy]]


def factory(names: Sequence[str], settings: ExecutorSettings, policy_spec: str | None = None) -> StrategyFactory:
    """The strategies ``names`` on the simulation's balances; an ``rl`` policy is loaded here, once
    (``PolicyError`` when it cannot be used)."""
    policy = load_policy(policy_spec, None, require_sha=False) if "rl" in names and policy_spec else None
    if "rl" in names and policy is None:
        raise ValueError("the rl strategy needs a policy (--policy PATH)")

    def build(ctx: LoopContext) -> list[LoopStrategy]:
        from shared.momentum import Momentum

        out: list[LoopStrategy] = []
        for name in names:
            if name == "momentum":
                out.append(Momentum(settings, RUN_ID, ctx.free_balance))
            elif name == "rl" and policy is not None:
                out.append(PolicyInLoop(settings, policy, policy_spec or "", ctx))
            elif name == "arbitrage":
                out.append(CycleWatch(ctx.markets))
        return out

    return build


class PolicyInLoop:
    """One exported policy trading the simulated market: the executor's RL book with a single seat."""

    name = "rl"

    def __init__(
        self, settings: ExecutorSettings, policy: CheckpointPolicy | PortfolioPolicy, policy_id: str, ctx: LoopContext
    ) -> None:
        self.cfg = settings
        self.free_balance = ctx.free_balance
        self.targets: dict[Market, float] = {}
        self.decisions: deque[Decision] = deque(maxlen=10_000)
        self.prices: dict[Market, float] = {}
        self.held: dict[Market, float] = {}  # base held per market, from fills
        self._open: dict[str, tuple[Market, float, float, float]] = {}  # id -> market, sign, amount, filled
        self._seq = itertools.count(1)
        trader: Trader
        if isinstance(policy, PortfolioPolicy):
            missing = sorted(set(policy.markets) - set(ctx.markets))
            if missing:
                raise ValueError(f"--policy {policy_id}: trained on {missing}, which the data does not hold")
            trader = PortfolioTrader(policy, policy_id, self.decisions)
        else:
            market = (ctx.venue, ctx.symbol)
            trader = SingleMarketTrader(policy, policy_id, market, self.may_short(market), self.targets, self.decisions)
        self.seat: Seat = seat(trader, policy_id, settings.rl_bar_seconds, True, settings.rl_window_bars, {})

    def may_short(self, market: Market) -> bool:
        return self.cfg.rl_allow_short or is_perpetual(market[0])

    def on_book(self, update: BookUpdate, book: SimBook) -> list[OrderIntent]:
        return []

    def on_order_event(self, event: OrderEvent) -> list[OrderIntent]:
        order = self._open.get(event.client_order_id)
        if order is None:
            return []
        market, sign, amount, filled = order
        now_filled = min(max(event.filled, filled), amount)  # cumulative: a stale report adds nothing
        self.held[market] = self.held.get(market, 0.0) + sign * (now_filled - filled)
        self._open[event.client_order_id] = (market, sign, amount, now_filled)
        if event.status in FINAL:
            del self._open[event.client_order_id]
        return []

    def position(self, market: Market) -> float:
        """Held plus what open orders may still fill."""
        flying = sum(s * (a - f) for m, s, a, f in self._open.values() if m == market)
        return self.held.get(market, 0.0) + flying

    def on_trade(self, trade: Trade) -> list[OrderIntent]:
        """Fold the trade into the seat's bars; at a bar every market closed, trade to the new targets."""
        market = (trade.exchange, trade.symbol)
        bars = self.seat.bars.get(market)
        if bars is None:
            return []
        before = bars.closed_total
        bars.add(trade.recv_ts, trade.price, trade.amount, trade.side == "buy")
        ready = self.seat.aligned() if bars.closed_total != before else None
        if ready is None:
            return []
        built, fresh = ready
        for m, b in built.items():
            self.prices[m] = float(b.close[-1])
        weights = {m: self.held.get(m, 0.0) * self.prices[m] / c if (c := self.capital(m)) > 0 else 0.0 for m in built}
        return self._rebalance(self.seat.trader.decide(built, fresh, weights), trade.recv_ts)

    def capital(self, market: Market) -> float:
        """Its position there plus the venue's free quote, at most ``rl_notional``."""
        free = self.free_balance(market[0], market[1].partition("/")[2])
        if free is None:
            return self.cfg.rl_notional
        return max(min(self.cfg.rl_notional, self.position(market) * self.prices.get(market, 0.0) + free), 0.0)

    def _rebalance(self, targets: dict[Market, float], now: int) -> list[OrderIntent]:
        moves = []
        for m in self.seat.markets:
            weight = targets.get(m, self.targets.get(m, 0.0))
            weight = weight if self.may_short(m) else max(weight, 0.0)
            if abs(weight - self.targets.get(m, 0.0)) > 1e-9:
                moves.append((m, weight * self.capital(m) / self.prices[m] - self.position(m)))
            self.targets[m] = weight
        intents: list[OrderIntent] = []
        for m, delta in sorted(moves, key=lambda move: move[1] > 0):  # sells first: buys see the cash
            intents += self._orders(m, delta, now)
        return intents

    def _orders(self, market: Market, delta: float, now: int) -> list[OrderIntent]:
        """Market orders for a change of ``delta`` base: spot first, then cross margin (as the executor)."""
        price, lot = self.prices[market], self.seat.trader.lots.get(market, NO_LOTS)
        free = self.free_balance(market[0], market[1].partition("/")[2]) if delta > 0 else None
        intents = []
        for side, amount, margin in order_legs(delta, self.position(market), price, free, lot):
            if amount * price < max(self.cfg.rl_min_order, 1e-12):
                continue
            coid = f"{self.name}-{RUN_ID}-{next(self._seq)}"
            exchange, symbol = market
            intent = OrderIntent(
                coid, exchange, symbol, side, "market", amount, now, strategy=self.name, margin_mode=margin
            )
            self._open[coid] = (market, 1.0 if side == "buy" else -1.0, amount, 0.0)
            intents.append(intent)
        return intents


class CycleWatch:
    """The arbitrage strategy's honest stand-in: it names the conversion cycles the data holds, trades none."""

    name = "arbitrage"

    def __init__(self, markets: Sequence[Market]) -> None:
        self.markets = tuple(sorted(set(markets)))
        cycles = conversion_cycles(self.markets)
        listed = ", ".join(f"{e} {s}" for e, s in self.markets)
        self.note = (
            f"no cycle in the data (markets: {listed})"
            if not cycles
            else f"cycles in the data ({'; '.join(cycles)}) not traded: the cycle engine is the executor's"
        )

    def on_book(self, update: BookUpdate, book: SimBook) -> list[OrderIntent]:
        return []

    def on_order_event(self, event: OrderEvent) -> list[OrderIntent]:
        return []


def conversion_cycles(markets: Sequence[Market]) -> list[str]:
    """Each venue's 3- and 4-asset loops of spot conversions (``binance USDT>BTC>ETH>USDT``), each once.

    Perpetuals and dated contracts (``_futures`` venues, ``BTC/USD:BTC`` symbols) convert nothing."""
    pairs: dict[str, set[frozenset[str]]] = {}
    for venue, symbol in markets:
        base, _, quote = symbol.partition("/")
        if quote and ":" not in quote and not is_perpetual(venue) and base != quote:
            pairs.setdefault(venue, set()).add(frozenset((base, quote)))
    found = []
    for venue, edges in sorted(pairs.items()):
        assets = sorted({a for e in edges for a in e})
        for n in (3, 4):
            for loop in itertools.permutations(assets, n):
                if loop[0] != min(loop) or loop[1] > loop[-1]:  # one rotation, one direction
                    continue
                if all(frozenset((loop[i], loop[(i + 1) % n])) in edges for i in range(n)):
                    found.append(f"{venue} {'>'.join((*loop, loop[0]))}")
    return found


@dataclass
class Account:
    """One strategy's trading, from the fills its orders got."""

    orders: int = 0
    rejected: int = 0
    fills: int = 0
    bought: float = 0.0  # base
    sold: float = 0.0
    cash: float = 0.0  # quote, fees in quote included
    fees: float = 0.0  # in quote (a base fee at its fill price)
    positions: dict[Market, float] = field(default_factory=dict)


class Ledger:
    """Per-strategy orders, rejections, fills, fees and PnL (cash + positions at the last price)."""

    def __init__(self, strategies: Sequence[LoopStrategy]) -> None:
        self.strategies = list(strategies)
        self.accounts = {s.name: Account() for s in strategies}
        self._owner: dict[str, str] = {}  # client order id -> strategy

    def sent(self, name: str, intents: Sequence[OrderIntent], rejected: int) -> None:
        account = self.accounts[name]
        account.orders += len(intents)
        account.rejected += rejected
        self._owner.update((i.client_order_id, name) for i in intents)

    def on_event(self, event: OrderEvent) -> None:
        name = self._owner.get(event.client_order_id)
        if name is None:
            return
        account, market = self.accounts[name], (event.exchange, event.symbol)
        base, _, quote = event.symbol.partition("/")
        sign = 1.0 if event.side == "buy" else -1.0
        for f in event.fills:
            account.fills += 1
            fee_base = f.fee if f.fee_asset == base else 0.0
            fee_quote = f.fee if f.fee_asset == quote else 0.0
            account.positions[market] = account.positions.get(market, 0.0) + sign * f.amount - fee_base
            account.cash -= sign * f.price * f.amount + fee_quote
            account.fees += fee_quote + fee_base * f.price
            if sign > 0:
                account.bought += f.amount
            else:
                account.sold += f.amount

    def report(self, mark: Callable[[Market], float | None]) -> dict[str, dict[str, Any]]:
        """Each strategy's figures; PnL marks what it holds at ``mark`` (the market's last price)."""
        out = {}
        for s in self.strategies:
            a = self.accounts[s.name]
            held = sum(amount * (mark(m) or 0.0) for m, amount in a.positions.items())
            out[s.name] = {
                "orders": a.orders,
                "rejected": a.rejected,
                "fills": a.fills,
                "bought": a.bought,
                "sold": a.sold,
                "fees": a.fees,
                "pnl": a.cash + held,
                "positions": {f"{e} {s}": amount for (e, s), amount in a.positions.items()},
                **({"decisions": len(s.decisions)} if isinstance(s, PolicyInLoop) else {}),
                **({"note": s.note} if isinstance(s, CycleWatch) else {}),
            }
        return out


def rejection(intent: OrderIntent, now: int, reason: str) -> OrderEvent:
    """The report of an order the guard refused, as the executor publishes it."""
    i = intent
    return OrderEvent(i.client_order_id, i.exchange, i.symbol, i.side, "rejected", now, reason=reason)
