"""Cross-venue arbitrage hosted by the executor: buy a market where it is cheap, sell it where it is dear.

Runs on every market listed on two or more of its venues (``arbitrage.cross_venues``, default the
executor's market-data venues the paper venue simulates). The pricing is
``services.executor.arbitrage.cross`` (inventory mode: quote held on the buying venue, base on the
selling one, both IOC legs at once); the guards are the cycle strategy's (book age, edge after both
taker fees and a slippage buffer on both legs, size cap, hourly cap, cool-down after a failed
execution, balances). A leg whose report has not come ``cross_leg_timeout_s`` after the start is
looked up in the executor's records of the gateway's reports, and the gateway is asked whether it
ever received it; an unbalanced outcome is unwound with one market order.

After each batch the inventory is rebalanced: a venue whose asset fell below
``cross_rebalance_below`` of its starting amount is topped up from the richest venue by a transfer
(the paper venue's transfer model: fee and settle time per asset; only assets settling within
``cross_max_transfer_s``), and the transfer's fee is charged to the strategy's PnL. Opportunities,
executions and transfers go to PostgreSQL and ``arb:events``; an execution in flight is kept in
``arb_inflight`` so that a restarted executor resolves it (looked up, then unwound if unbalanced).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import ClassVar

from services.executor.arbitrage.cross import CrossOpportunity, CrossVenueArbitrage, Top
from services.executor.arbitrage.cross_execution import CrossExecution, CrossGuards, CrossLeg
from services.executor.arbitrage.rebalance import Carry, Route, cheapest_route
from services.executor.arbitrage.records import ArbitrageStore, ExecutionRecord, OpportunityRecord, TransferRecord
from services.executor.strategies.arbitrage import save_and_publish
from services.executor.strategies.base import Feed, StrategyBase, StrategyContext
from shared.paper.book import SimBook
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, streams

log = logging.getLogger(__name__)
DUST = 1e-9
ARRIVAL_GIVE_UP_NS = 120 * 1_000_000_000  # a transfer not seen arriving by then (plus its settle time) is let go


def _floor8(x: float) -> float:
    """Down to 1e-8 (a satoshi), after undoing float noise (0.0455 stored as 0.04549999999)."""
    return math.floor(round(x * 1e8, 4)) / 1e8


def build(ctx: StrategyContext) -> CrossArbitrage | None:
    """The cross-venue strategy when ``arbitrage.cross_enabled`` (default: as ``arbitrage.enabled``) and at
    least two venues are configured; fees are the paper venue's taker fees."""
    settings, arb = ctx.settings, ctx.settings.arbitrage
    enabled = arb.cross_enabled if arb.cross_enabled is not None else arb.enabled
    if not (enabled if enabled is not None else settings.mode == "replay"):
        return None
    sims = settings.executor.venues
    venues = arb.cross_venues or [v for v in settings.executor.market_data_venues if v in sims]
    if len(venues) < 2:
        return None
    fees = {v: sims[v].taker_fee if v in sims else arb.fee_bps / 10_000 for v in venues}
    engine = CrossVenueArbitrage(fees, settings.executor.transfers, settings.executor.transfer_default,
                                 max_transfer_s=arb.cross_max_transfer_s, max_amounts=arb.cross_max_amount)  # fmt: skip
    return CrossArbitrage(ctx, venues, engine, ArbitrageStore(ctx.store.db))


class CrossArbitrage(StrategyBase):
    name = "xarb"
    feeds: ClassVar[frozenset[Feed]] = frozenset({"book", "order_event"})

    def __init__(self, ctx: StrategyContext, venues: list[str], engine: CrossVenueArbitrage, store: ArbitrageStore,
                 clock: Callable[[], int] = time.time_ns) -> None:  # fmt: skip
        self.ctx, self.settings = ctx, ctx.settings.arbitrage
        self.venues, self.engine, self.store, self.clock = set(venues), engine, store, clock
        self.guards = CrossGuards(self.settings)
        self.slippage = self.settings.slippage_bps / 10_000
        self.listed: dict[str, set[str]] = {}
        self.updated: dict[tuple[str, str], int] = {}
        self.mids: dict[tuple[str, str], float] = {}
        self.targets: dict[tuple[str, str], float] = {}  # (venue, asset) -> the amount the venue started with
        # (to venue, asset) -> a transfer on its way: (not before, ns; the free balance it brings; give up, ns)
        self.in_transit: dict[tuple[str, str], tuple[int, float, int]] = {}
        self.execution: CrossExecution | None = None
        self.carry: Carry | None = None  # a rebalancing carry through a fast coin, in progress
        self.pending: list[OrderIntent] = []  # made in flush (an unwind after a lookup): out with the next hook
        self.pnl: dict[str, float] = {}  # quote asset -> realised profits minus transfer costs
        self.opportunities: list[OpportunityRecord] = []
        self.executions: list[ExecutionRecord] = []
        self.transfers: list[TransferRecord] = []
        self._recorded: dict[tuple[str, str, str], tuple[int, str]] = {}
        self._persist = False
        self._finished_id: str | None = None  # to forget in arb_inflight at the next flush
        self._next_lookup = 0
        self._ids = itertools.count(1)

    def _free(self, venue: str, asset: str) -> float:
        return self.ctx.free_balance(venue, asset) or 0.0

    async def start(self) -> list[OrderIntent]:
        """Take back an execution a previous run left in flight: its legs are looked up at once."""
        for state in await self.store.inflight(self.name):
            execution = CrossExecution.restore(state)
            if self.execution is None:
                self.execution, self._next_lookup = execution, 0
                log.warning("xarb: resuming %s left in flight by an earlier run", execution.execution_id)
            else:  # one at a time: an older leftover is finished as found
                await self.store.save_inflight(execution.execution_id, self.name, None)
        return []

    # ---- market data -----------------------------------------------------------------------

    def on_book(self, update: BookUpdate, book: SimBook) -> list[OrderIntent]:
        intents, self.pending = self.pending, []
        venue, symbol = update.exchange, update.symbol
        if venue not in self.venues or "/" not in symbol or ":" in symbol:
            return intents
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return intents
        self.engine.on_top(venue, symbol, Top(bid, book.bids[bid], ask, book.asks[ask]))
        self.updated[(venue, symbol)] = update.recv_ts
        self.mids[(venue, symbol)] = (bid + ask) / 2
        listed = self.listed.setdefault(symbol, set())
        if venue not in listed:
            listed.add(venue)
            for asset in symbol.split("/"):
                self.targets.setdefault((venue, asset), self._free(venue, asset))
        if len(listed) < 2:
            return intents
        opp = self.engine.best(symbol, self._free)
        if opp is not None:
            intents += self._consider(opp, update.recv_ts)
        return intents

    def _consider(self, opp: CrossOpportunity, recv_ts: int) -> list[OrderIntent]:
        base, _, quote = opp.symbol.partition("/")
        fee_a, fee_b = self.engine.taker_fees[opp.buy_venue], self.engine.taker_fees[opp.sell_venue]
        buy_limit, sell_limit = opp.buy_price * (1 + self.slippage), opp.sell_price * (1 - self.slippage)
        cap = self.settings.cross_max_amount.get(base, math.inf)
        fee_room = max(fee_a, self.ctx.settings.risk.limits.fee_buffer)  # what the pre-trade guard wants free
        affordable = self._free(opp.buy_venue, quote) / (buy_limit * (1 + fee_room))
        amount = _floor8(min(opp.amount, cap, affordable, self._free(opp.sell_venue, base)))
        edge = (sell_limit * (1 - fee_b) - buy_limit * (1 + fee_a)) * amount - opp.transfer_cost
        expected = opp.expected_profit * amount / opp.amount if opp.amount else 0.0
        now = self.clock()
        book_ts = (self.updated[(opp.buy_venue, opp.symbol)], self.updated[(opp.sell_venue, opp.symbol)])
        decision = self.guards.refusal(book_ts, edge, now) if amount > 0 else "no_balance"
        if decision is None and opp.mode != "inventory":
            decision = "no_inventory"  # carry mode (buy, move, sell) is not run by the executor
        if decision is None and self.execution is not None:
            decision = "busy"
        intents: list[OrderIntent] = []
        execution_id = None
        if decision is None:
            execution_id = f"xarb-{self.ctx.run_id}-{next(self._ids)}"
            execution = CrossExecution(execution_id, opp.symbol, opp.buy_venue, opp.sell_venue, expected, recv_ts, now)
            execution.legs = [CrossLeg(f"{execution_id}-buy", opp.buy_venue, "buy", amount, buy_limit),
                              CrossLeg(f"{execution_id}-sell", opp.sell_venue, "sell", amount, sell_limit)]  # fmt: skip
            self.execution, self._persist = execution, True
            self._next_lookup = now + int(self.settings.cross_leg_timeout_s * 1e9)
            self.guards.started(now)
            intents = execution.intents(execution.legs, now, self.name)
            log.info("xarb: %s buy %.8g %s on %s at %.8g, sell on %s at %.8g: expected %+.8g %s", execution_id,
                     amount, opp.symbol, opp.buy_venue, opp.buy_price, opp.sell_venue, opp.sell_price, expected,
                     quote)  # fmt: skip
        self._record(opp, amount, expected, decision or "fired", execution_id, recv_ts, now)
        return intents

    def _record(self, opp: CrossOpportunity, amount: float, expected: float, decision: str,
                execution_id: str | None, recv_ts: int, now: int) -> None:  # fmt: skip
        key = (opp.symbol, opp.buy_venue, opp.sell_venue)
        last = self._recorded.get(key)
        if last is not None and last[1] == decision and now - last[0] < self.settings.record_interval_s * 1e9:
            return
        self._recorded[key] = (now, decision)
        base, _, quote = opp.symbol.partition("/")
        legs = ({"venue": opp.buy_venue, "symbol": opp.symbol, "side": "buy", "price": opp.buy_price, "amount": amount},
                {"venue": opp.sell_venue, "symbol": opp.symbol, "side": "sell", "price": opp.sell_price,
                 "amount": amount})  # fmt: skip
        gross = opp.sell_price / opp.buy_price - 1
        self.opportunities.append(OpportunityRecord(
            f"{opp.buy_venue}>{opp.sell_venue}", (quote, base, quote), legs, gross,
            expected / (amount * opp.buy_price) if amount else 0.0, amount * opp.buy_price, expected, decision,
            execution_id, recv_ts, now, strategy=self.name))  # fmt: skip

    # ---- reports -----------------------------------------------------------------------------

    def on_order_event(self, event: OrderEvent) -> list[OrderIntent]:
        intents, self.pending = self.pending, []
        if self.carry is not None and self.carry.owns(event.client_order_id):
            self.carry.apply(event)
            return intents
        execution = self.execution
        if execution is None or not execution.owns(event.client_order_id):
            return intents
        execution.apply(event)
        return intents + self._step(execution)

    def _step(self, execution: CrossExecution) -> list[OrderIntent]:
        now = self.clock()
        leg = execution.next_step(f"{execution.execution_id}-unwind", DUST)
        if leg is not None:
            self._persist = True
            self._next_lookup = now + int(self.settings.cross_leg_timeout_s * 1e9)
            return execution.intents([leg], now, self.name)
        if execution.status != "running":
            self._finish(execution, now)
        return []

    def _finish(self, execution: CrossExecution, now: int) -> None:
        self.execution, self._persist = None, True
        execution.finished_ns = now
        if execution.status not in ("completed",):
            self.guards.failed(now)
        mids = [m for (v, s), m in self.mids.items() if s == execution.symbol]
        realized = execution.realized(sum(mids) / len(mids) if mids else 0.0)
        quote = execution.quote
        self.pnl[quote] = self.pnl.get(quote, 0.0) + realized
        self.executions.append(ExecutionRecord(
            execution.execution_id, f"{execution.buy_venue}>{execution.sell_venue}",
            (quote, execution.base, quote), "cross_inventory", execution.status,
            execution.expected_profit / max(DUST, execution.legs[0].amount * (execution.legs[0].limit or 1.0)),
            execution.legs[0].amount * (execution.legs[0].limit or 0.0), execution.expected_profit, realized,
            (execution.started_ns - execution.detected_ns) / 1_000, execution.failure,
            tuple({"client_order_id": leg.client_order_id, "venue": leg.venue, "side": leg.side,
                   "amount": leg.amount, "filled": leg.filled, "cost": leg.cost, "status": leg.status}
                  for leg in execution.legs),
            {execution.base: execution.base_delta()}, execution.started_ns, now, strategy=self.name,
            pnl=self.pnl[quote]))  # fmt: skip
        self._finished_id = execution.execution_id
        log.info("xarb: %s %s: realised %+.8g %s vs expected %+.8g; strategy PnL %+.8g %s", execution.execution_id,
                 execution.status, realized, quote, execution.expected_profit, self.pnl[quote], quote)  # fmt: skip

    # ---- I/O after each batch: lookups, inventory, records --------------------------------------

    async def flush(self) -> None:
        execution = self.execution
        if execution is not None and self.clock() >= self._next_lookup:
            await self._look_up(execution)
        if self._persist:
            self._persist = False
            if self.execution is not None:
                await self.store.save_inflight(self.execution.execution_id, self.name, self.execution.state())
            if self._finished_id is not None:
                await self.store.save_inflight(self._finished_id, self.name, None)
                self._finished_id = None
        await self._rebalance()
        opportunities, executions, transfers = self.opportunities, self.executions, self.transfers
        self.opportunities, self.executions, self.transfers = [], [], []
        if opportunities or executions:
            await save_and_publish(self.store, self.ctx.publish, opportunities, executions)
        for t in transfers:
            await self.store.save_transfer(t)
        if transfers and self.ctx.publish is not None:
            await self.ctx.publish(streams.ARB_EVENTS, [t.event() for t in transfers])

    async def _look_up(self, execution: CrossExecution) -> None:
        """Resolve the legs whose reports are overdue from what the gateway reported (stored), or from the
        gateway itself: an order it never received is a leg that never traded."""
        self._next_lookup = self.clock() + int(self.settings.cross_leg_timeout_s * 1e9)
        for leg in [leg for leg in execution.legs if not leg.final]:
            found = await self.store.leg_outcome(leg.client_order_id)
            if found is not None and found[0] in ("filled", "cancelled", "rejected"):
                execution.resolve(leg.client_order_id, *found)
                log.warning("xarb: %s: report of %s never came; the records say %s, %.8g filled",
                            execution.execution_id, leg.client_order_id, found[0], found[1])  # fmt: skip
                continue
            known = await self.ctx.knows(leg.client_order_id, leg.venue, execution.symbol) if self.ctx.knows else None
            if found is None and known is False:
                execution.resolve(leg.client_order_id, "rejected", 0.0, 0.0, 0.0)
                log.warning("xarb: %s: %s never reached %s", execution.execution_id, leg.client_order_id, leg.venue)
            else:
                log.warning("xarb: %s: %s still unresolved on %s; looking again in %.0f s", execution.execution_id,
                            leg.client_order_id, leg.venue, self.settings.cross_leg_timeout_s)  # fmt: skip
        self.pending += self._step(execution)

    async def _rebalance(self) -> None:
        """Top up every venue whose asset fell below its share from the venue with the most surplus, by the
        cheapest route that settles fast enough (the asset itself, or a carry coin such as XNO)."""
        if self.ctx.withdraw is None or self.execution is not None:
            return
        now = self.clock()
        await self._advance_carry(now)
        for (venue, asset), target in list(self.targets.items()):
            free = self._free(venue, asset)
            transit = self.in_transit.get((venue, asset))
            if transit is not None:  # one transfer per shortfall: the next waits until this one is seen arriving
                earliest, expect, give_up = transit
                if now < earliest or (free + DUST < expect and now < give_up):
                    continue
                del self.in_transit[(venue, asset)]
            if target <= 0 or free >= target * self.settings.cross_rebalance_below:
                continue
            donors = [(self._free(v, asset) - self.targets[(v, asset)], v) for v in self.venues
                      if v != venue and (v, asset) in self.targets]  # fmt: skip
            surplus, donor = max(donors, default=(0.0, ""))
            need = _floor8(min(target - free, surplus))
            if not donor or need <= 0:
                continue
            e = self.engine
            route = cheapest_route(asset, donor, venue, need, e.transfers, e.transfer_default, e.tops, e.taker_fees,
                                   self.settings.cross_max_transfer_s)  # fmt: skip
            if route is None:
                continue  # nothing to spare, or every route too slow: the venue stays short until prices turn
            if route.coin == asset:
                await self._transfer(route, need, now)
            elif self.carry is None:  # take the carry's expected cost on top, so that the venue ends near its target
                grossed = _floor8(min(need + route.cost, surplus))
                e = self.engine
                bigger = cheapest_route(asset, donor, venue, grossed, e.transfers, e.transfer_default, e.tops,
                                        e.taker_fees, self.settings.cross_max_transfer_s)  # fmt: skip
                self._start_carry(bigger or route, now)

    async def _transfer(self, route: Route, need: float, now: int) -> None:
        assert self.ctx.withdraw is not None
        amount = need + route.cost  # the fee is taken from what is sent
        if need <= route.cost:
            return
        transfer_id = await self.ctx.withdraw(route.donor, route.asset, Decimal(str(round(amount, 8))), "",
                                              route.receiver)  # fmt: skip
        arrives = now + int((route.settle_s + 1.0) * 1e9)
        expect = self._free(route.receiver, route.asset) + need  # what the receiver holds once it lands
        self.in_transit[(route.receiver, route.asset)] = (arrives, expect, arrives + ARRIVAL_GIVE_UP_NS)
        self._charge(TransferRecord(transfer_id, self.name, route.donor, route.receiver, route.asset, amount,
                                    route.cost, route.cost, route.asset, route.settle_s, now))  # fmt: skip

    def _start_carry(self, route: Route, now: int) -> None:
        top = self.engine.tops[(route.donor, f"{route.coin}/{route.asset}")]
        coins = _floor8(route.amount / (top.ask * (1 + self.engine.taker_fees[route.donor])))
        carry_id = f"xarb-{self.ctx.run_id}-rb{next(self._ids)}"
        self.carry = Carry(carry_id, route, CrossLeg(f"{carry_id}-buy", route.donor, "buy", coins, None))
        self.pending.append(self.carry.intent(self.carry.buy, now, self.name))
        self.in_transit[(route.receiver, route.asset)] = (2**62, 0.0, 2**62)  # until the carry is done
        log.info("xarb: carrying %.8g %s %s -> %s through %s (expected cost %.8g %s)", route.amount, route.asset,
                 route.donor, route.receiver, route.coin, route.cost, route.asset)  # fmt: skip

    async def _advance_carry(self, now: int) -> None:
        carry = self.carry
        if carry is None or self.ctx.withdraw is None:
            return
        route = carry.route
        if carry.state == "bought":
            rule = self.engine.transfers.get(route.coin, self.engine.transfer_default)
            coins = _floor8(carry.coins_held())
            carry.transfer_id = await self.ctx.withdraw(route.donor, route.coin, Decimal(str(coins)), "",
                                                        route.receiver)  # fmt: skip
            carry.sent, carry.fee, carry.state = coins, rule.fee, "moving"
            carry.arrives_ns = now + int(rule.settle_s * 1e9)
        elif carry.state == "moving" and now >= carry.arrives_ns:
            arrived = _floor8(carry.sent - carry.fee)
            if self._free(route.receiver, route.coin) + DUST >= arrived:
                carry.sell = CrossLeg(f"{carry.carry_id}-sell", route.receiver, "sell", arrived, None)
                carry.state = "selling"
                self.pending.append(carry.intent(carry.sell, now, self.name))
        elif carry.state == "done":
            self.carry = None
            self.in_transit.pop((route.receiver, route.asset), None)
            self._charge(TransferRecord(carry.transfer_id or carry.carry_id, self.name, route.donor, route.receiver,
                                        route.coin, carry.sent, carry.fee, carry.cost, route.asset, route.settle_s,
                                        now))  # fmt: skip

    def _charge(self, record: TransferRecord) -> None:
        """Charge a move's cost (in ``record.cost_asset``) to the PnL in the quote asset it is valued in."""
        quote, price = self._value(record.cost_asset)
        cost = record.cost * price
        self.pnl[quote] = self.pnl.get(quote, 0.0) - cost
        self.transfers.append(replace(record, cost=cost, cost_asset=quote, pnl=self.pnl[quote]))
        log.info("xarb: moved %.8g %s %s -> %s (%s): cost %.8g %s charged to PnL (now %+.8g %s)", record.amount,
                 record.asset, record.from_venue, record.to_venue, record.transfer_id, cost, quote, self.pnl[quote],
                 quote)  # fmt: skip

    def _value(self, asset: str) -> tuple[str, float]:
        """(quote asset, price of one ``asset`` in it) from the mids seen: 1 for a quote asset itself."""
        for (_, symbol), mid in self.mids.items():
            base, _, quote = symbol.partition("/")
            if base == asset:
                return quote, mid
        return asset, 1.0
