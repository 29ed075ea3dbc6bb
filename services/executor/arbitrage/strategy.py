"""The cycle-arbitrage strategy of one venue: book updates in, IOC leg intents out, reports back.

Each book update moves one market's top of book in the incremental engine, which re-evaluates
only the cycles through that market. A cycle profitable after fees is sized on the visible depth,
passed through the execution guards, recorded, and - when nothing refuses it and no other
execution is running - fired as a `CycleExecution`: every leg at once when the venue holds
inventory in every asset of the cycle, otherwise one leg after another. Intents go through the
executor's ordinary order path (client order ids, pre-trade checks, storage), and the reports
come back through ``on_event``. The executor hosts it through
``services.executor.strategies.arbitrage`` (one per configured venue).

The graph is fixed by a market list when one is configured; otherwise it grows with the symbols
seen on the venue's book stream (each new market re-enumerates the cycles: fine for the handful
of markets a replay or a small subscription has, give a market list for a Binance-sized graph).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence

from services.executor.arbitrage.books import Book
from services.executor.arbitrage.cycles import SIDE_NAMES, enumerate_cycles
from services.executor.arbitrage.engine import CycleEngine
from services.executor.arbitrage.execution import CycleExecution
from services.executor.arbitrage.guards import ExecutionGuards, LegOrder, leg_orders
from services.executor.arbitrage.markets import Market
from services.executor.arbitrage.records import ExecutionRecord, OpportunityRecord
from services.executor.arbitrage.scan import Opportunity, rank
from services.executor.arbitrage.sizing import Leg, size_cycle
from shared.paper.book import SimBook
from shared.schemas import OrderEvent, OrderIntent
from shared.sections.arbitrage import ArbitrageSettings

log = logging.getLogger(__name__)

Clock = Callable[[], int]


class ArbitrageStrategy:
    """Detect, guard, fire and follow cycle executions on one venue."""

    name = "arb"

    def __init__(
        self,
        settings: ArbitrageSettings,
        venue: str,
        run_id: str,
        *,
        taker_fee: float,
        fee_in_quote: bool = False,
        free: Callable[[str], float] = lambda asset: 0.0,
        markets: Sequence[Market] | None = None,
        clock: Clock = time.time_ns,
    ) -> None:
        self.settings = settings
        self.venue = venue
        self.run_id = run_id
        self.taker_fee = taker_fee
        self.fee_in_quote = fee_in_quote
        self.free = free  # the venue's free balance of an asset (0 when unknown: sequential execution)
        self.clock = clock
        self.fixed = markets is not None
        self.markets: dict[str, Market] = {m.symbol: m for m in markets or ()}
        self.books: dict[str, SimBook] = {}
        self.updated: dict[str, int] = {}  # symbol -> receive time of its last book update, ns
        self.guards = ExecutionGuards(settings)
        self.execution: CycleExecution | None = None
        self.opportunities: list[OpportunityRecord] = []
        self.executions: list[ExecutionRecord] = []
        self._recorded: dict[int, tuple[int, str]] = {}  # cycle -> (last time stored, decision)
        self._ids = itertools.count(1)
        self._engine: CycleEngine | None = None
        self._touch: list[int] = []
        self._stats = {"updates": 0, "evaluated": 0, "opportunities": 0, "fired": 0}
        self._window_start = clock()
        self._last_opportunity_log = 0
        self._build()

    # ---- the graph -------------------------------------------------------------------------

    def _build(self) -> None:
        markets = list(self.markets.values())
        self._index = {m.symbol: i for i, m in enumerate(markets)}
        if len(markets) < 3:
            self._engine = None
            return
        cycles = enumerate_cycles(markets, self.settings.max_len, self.settings.start_assets or None)
        self._engine = CycleEngine(cycles, self.settings.min_net_return)
        self._touch = [len(cycles.by_edge[2 * m]) + len(cycles.by_edge[2 * m + 1]) for m in range(len(markets))]
        for symbol, book in self.books.items():
            self._engine.load(self._index[symbol], book.best_bid() or 0.0, book.best_ask() or 0.0)
        if len(cycles):
            log.info("arb %s: %d markets, %d cycles of up to %d legs", self.venue, len(markets), len(cycles),
                     self.settings.max_len)  # fmt: skip

    def _add_market(self, symbol: str) -> bool:
        base, sep, quote = symbol.partition("/")
        if self.fixed or not sep or ":" in quote or "/" in quote:
            return False  # outside the configured market list, or a derivative (BTC/USDT:USDT)
        self.markets[symbol] = Market(symbol, base, quote, self.taker_fee)
        return True

    # ---- market data -----------------------------------------------------------------------

    def on_book(self, symbol: str, book: SimBook, recv_ts: int) -> list[OrderIntent]:
        """Take the venue's book of ``symbol`` after an update; return the intents of a fired cycle."""
        if symbol not in self._index:
            if not self._add_market(symbol):
                return []
            self.books[symbol] = book
            self.updated[symbol] = recv_ts
            self._build()
            candidates = self._engine.resync() if self._engine else []
        else:
            self.books[symbol] = book
            self.updated[symbol] = recv_ts
            if self._engine is None:
                return []
            m = self._index[symbol]
            candidates = self._engine.update(m, book.best_bid() or 0.0, book.best_ask() or 0.0)
            self._stats["evaluated"] += self._touch[m]
        self._stats["updates"] += 1
        intents = self._consider(self._engine.confirm(candidates), recv_ts) if candidates and self._engine else []
        self._maybe_log_summary()
        return intents

    def _book(self, symbol: str) -> Book:
        sim = self.books[symbol]
        depth = self.settings.sizing_depth
        return Book(
            tuple(heapq.nlargest(depth, sim.bids.items())),
            tuple(heapq.nsmallest(depth, sim.asks.items())),
        )

    def _consider(self, confirmed: Iterable[tuple[int, float, float]], recv_ts: int) -> list[OrderIntent]:
        assert self._engine is not None
        cycles = self._engine.cycles
        found = []
        for cycle, gross, net in confirmed:
            legs = [
                Leg(cycles.markets[m], side, self._book(cycles.markets[m].symbol)) for m, side in cycles.legs(cycle)
            ]
            sized = size_cycle(legs)
            if sized is not None:
                found.append(Opportunity(cycle, tuple(cycles.assets(cycle)), gross, net, sized))
        intents: list[OrderIntent] = []
        now = self.clock()
        for opp in rank(found):
            self._stats["opportunities"] += 1
            book_ts = [self.updated[cycles.markets[m].symbol] for m, _ in cycles.legs(opp.cycle)]
            decision = self.guards.refusal(opp, book_ts, now)
            if decision is None and (self.execution is not None or intents):
                decision = "busy"
            plan: list[LegOrder] = []
            if decision is None:
                plan = self._plan(opp)
                decision = None if plan else "no_balance"
            execution_id = None
            if decision is None:
                execution = self._fire(opp, plan, recv_ts)
                execution_id = execution.execution_id
                intents = execution.start(now)
            self._record(opp, decision or "fired", execution_id, recv_ts, now)
        return intents

    # ---- execution -------------------------------------------------------------------------

    def _input(self, order: LegOrder) -> tuple[str, float]:
        """The asset a leg spends and how much of it, at its limit (fee included when charged in quote)."""
        market = self.markets[order.symbol]
        if order.side == "sell":
            return market.base, order.amount
        fee = market.taker_fee if self.fee_in_quote else 0.0
        return market.quote, order.amount * order.limit_price * (1 + fee)

    def _plan(self, opp: Opportunity) -> list[LegOrder]:
        """Capped IOC legs the venue's balances can pay for; empty when not even one lot can."""
        start_free = self.free(opp.assets[0])
        slack = (1 + self.settings.slippage_bps / 10_000) * (1 + (self.taker_fee if self.fee_in_quote else 0.0))
        plan = leg_orders(opp, self.markets, self.settings, available=start_free / slack)
        first = plan[0] if plan else None
        if first is None or first.amount <= 0 or first.amount < self.markets[first.symbol].min_amount:
            return []
        return plan

    def _fire(self, opp: Opportunity, plan: list[LegOrder], recv_ts: int) -> CycleExecution:
        all_at_once = all(self.free(asset) >= need for asset, need in map(self._input, plan))
        start_amount = opp.max_start_amount * plan[0].amount / opp.sized.fills[0].amount  # at the planned price
        execution = CycleExecution(
            execution_id=f"arb-{self.run_id}-{next(self._ids)}",
            venue=self.venue,
            assets=opp.assets,
            plan=plan,
            markets=self.markets,
            all_at_once=all_at_once,
            fee_in_quote=self.fee_in_quote,
            detected_ns=recv_ts,
            net_return=opp.net_return,
            expected_profit=opp.expected_profit * min(1.0, start_amount / opp.max_start_amount),
            start_amount=start_amount,
            strategy=self.name,
            max_unwind_orders=self.settings.max_unwind_orders,
        )
        self.execution = execution
        self.guards.started(self.clock())
        self._stats["fired"] += 1
        return execution

    def on_event(self, event: OrderEvent) -> list[OrderIntent]:
        """Follow a report of one of our orders; return the next leg or unwind intents."""
        execution = self.execution
        if execution is None or not execution.owns(event.client_order_id):
            return []
        books = {s: self._book(s) for s in self.books}
        now = self.clock()
        intents = execution.on_event(event, books, now)
        if execution.finished:
            self._finish(execution, now)
        return intents

    def _finish(self, execution: CycleExecution, now: int) -> None:
        self.execution = None
        if execution.failed:
            self.guards.failed(now)
        realized = execution.realized_profit(self.value)
        record = ExecutionRecord(
            execution.execution_id,
            self.venue,
            execution.assets,
            "all_at_once" if execution.all_at_once else "sequential",
            execution.status,
            execution.net_return,
            execution.start_amount,
            execution.expected_profit,
            realized,
            (execution.started_ns - execution.detected_ns) / 1_000,
            execution.failure,
            tuple(o.to_dict() for o in execution.orders),
            execution.residuals(),
            execution.started_ns,
            execution.finished_ns,
        )
        self.executions.append(record)
        path = "→".join(execution.assets)
        start = execution.start_asset
        if execution.status == "unwind_failed":
            log.error("arb %s: %s %s could not be unwound: %s still held (%s)", self.venue, execution.execution_id,
                      path, execution.leftovers({s: self._book(s) for s in self.books}), execution.failure)  # fmt: skip
        elif execution.failed:
            log.warning("arb %s: %s %s failed (%s), unwound: realized %+.8g %s vs expected %+.8g", self.venue,
                        execution.execution_id, path, execution.failure, realized, start,
                        execution.expected_profit)  # fmt: skip
        else:
            log.info("arb %s: %s %s completed (%s): realized %+.8g %s vs expected %+.8g", self.venue,
                     execution.execution_id, path, record.mode, realized, start, execution.expected_profit)  # fmt: skip

    def value(self, asset: str, in_asset: str) -> float | None:
        """Mid price of ``asset`` in ``in_asset`` on this venue: a direct market, its inverse, or via one asset."""
        direct = self._mid(asset, in_asset)
        if direct is not None:
            return direct
        for market in self.markets.values():
            if asset in (market.base, market.quote):
                via = market.quote if market.base == asset else market.base
                first, second = self._mid(asset, via), self._mid(via, in_asset)
                if first is not None and second is not None:
                    return first * second
        return None

    def _mid(self, asset: str, in_asset: str) -> float | None:
        if asset == in_asset:
            return 1.0
        for symbol, inverse in ((f"{asset}/{in_asset}", False), (f"{in_asset}/{asset}", True)):
            book = self.books.get(symbol)
            mid = book.mid() if book is not None else None
            if mid:
                return 1 / float(mid) if inverse else float(mid)
        return None

    # ---- records and logs --------------------------------------------------------------------

    def _record(self, opp: Opportunity, decision: str, execution_id: str | None, recv_ts: int, now: int) -> None:
        last = self._recorded.get(opp.cycle)
        interval_ns = self.settings.record_interval_s * 1e9
        if last is not None and last[1] == decision and now - last[0] < interval_ns and execution_id is None:
            return  # the same opportunity, same decision, recorded a moment ago
        self._recorded[opp.cycle] = (now, decision)
        legs = tuple(
            {"symbol": f.symbol, "side": SIDE_NAMES[f.side], "price": f.price, "amount": f.amount}
            for f in opp.sized.fills
        )
        self.opportunities.append(
            OpportunityRecord(
                self.venue,
                opp.assets,
                legs,
                opp.gross_return,
                opp.net_return,
                opp.max_start_amount,
                opp.expected_profit,
                decision,
                execution_id,
                recv_ts,
                now,
            )
        )
        if now - self._last_opportunity_log >= 1e9 or execution_id is not None:
            self._last_opportunity_log = now
            log.info("arb %s: opportunity %s net %+.4f%% (gross %+.4f%%), size %.8g %s, expected %+.8g: %s",
                     self.venue, "→".join(opp.assets), opp.net_return * 100, opp.gross_return * 100,
                     opp.max_start_amount, opp.assets[0], opp.expected_profit, decision)  # fmt: skip

    def drain(self) -> tuple[list[OpportunityRecord], list[ExecutionRecord]]:
        """Records made since the last call, for the executor to store."""
        out = (self.opportunities, self.executions)
        self.opportunities, self.executions = [], []
        return out

    def _maybe_log_summary(self) -> None:
        now = self.clock()
        elapsed = (now - self._window_start) / 1e9
        if elapsed < self.settings.log_interval_s:
            return
        stats = self._stats
        best = ""
        if self._engine is not None and len(self._engine.cycles):
            self._engine.resync()  # also wipes the rounding drift of the incremental sums
            top = self._engine.best()
            if top is not None and math.isfinite(top[1]):
                best = f"; best cycle now {'→'.join(self._engine.cycles.assets(top[0]))} net {top[1]:+.4%}"
        log.info("arb %s: %d markets, %d cycles; %d book updates, %.0f cycle evaluations/s, %d opportunities, "
                 "%d executions in %.0fs%s", self.venue, len(self.markets),
                 len(self._engine.cycles) if self._engine else 0, stats["updates"], stats["evaluated"] / elapsed,
                 stats["opportunities"], stats["fired"], elapsed, best)  # fmt: skip
        self._stats = dict.fromkeys(stats, 0)
        self._window_start = now
