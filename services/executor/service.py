"""The executor service: intents in, orders out, every outcome stored and published once.

Start-up order matters for exactly-once execution: restore the paper venue from PostgreSQL,
reconcile orders claimed but possibly never sent (ask the venue; resubmit what it never got),
and only then consume new intents. Market data (`md:book:*`, `md:trades:*`) drives the paper
exchange and the baseline strategy.

Every intent passes ``shared.pretrade.PreTradeGuard`` inline; its rejection reason reaches
``orders:events``. The guard learns mids from the books, free balances and positions from the
gateway, resting orders from the order reports, and halts, limit changes and heartbeats from
``risk:control``; a halt's cancels go straight to the gateway. A live executor halts new orders
when the risk service is silent for ``risk.heartbeat_timeout_s`` from start; a paper or replay
executor only once it has heard the risk service (`tradewind up --only executor` still trades).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterable

from redis.asyncio import Redis

from services.executor.arbitrage.records import ArbitrageStore
from services.executor.arbitrage.strategy import build_strategies
from services.executor.gateway import Gateway, PaperGateway, Report, VenueBalance
from services.executor.rl_strategy import RLStrategy, held_by_strategy, latest_promoted
from services.executor.store import OPEN_STATUSES, UNSENT_STATUSES, ExecutorStore
from services.executor.strategy import MomentumStrategy
from shared import halts, pretrade
from shared.bus import Consumer, Delivery, RedisBus, connect_redis
from shared.config import Settings
from shared.metrics import ServiceMetrics
from shared.paper import LedgerEntry, PaperExchange
from shared.paper.book import SimBook
from shared.paper.positions import Position
from shared.pretrade import PreTradeGuard, split_symbol
from shared.runtime import on_stop, service_metrics
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, PolicyUpdate, RiskControl, RiskEvent, Trade, streams
from shared.sections.risk import LimitOverride, RiskSettings
from shared.storage import Database

log = logging.getLogger(__name__)

CLAIM_KEY = "tw:executor:claim:"  # + client order id: SET NX before an order is sent
CLAIM_TTL_S = 7 * 86400


def build_gateway(settings: Settings, run_id: str) -> Gateway:
    """Paper unless live trading is asked for; live refuses to start while any gate is closed."""
    ex = settings.executor
    if settings.mode == "live" or ex.gateway == "ccxt":
        from services.executor.ccxt_gateway import CcxtGateway, LiveGateClosed, live_gate

        closed = live_gate(settings)
        if closed:
            raise LiveGateClosed(f"live trading refused: {closed}")
        for venue in sorted(ex.live_venues):  # the limits the gate checked: the venue's own
            limits = settings.risk.venues[venue].model_dump(exclude_unset=True)
            log.warning("LIVE trading on %s: real orders, risk limits %s", venue, limits)
        return CcxtGateway(ex.live_venues)
    exchange = PaperExchange(
        ex.venues, transfers=ex.transfers, transfer_default=ex.transfer_default, seed=ex.seed, id_prefix=f"P{run_id}-"
    )
    return PaperGateway(exchange)


def guarded_limits(settings: Settings) -> RiskSettings:
    """The risk settings the pre-trade guard enforces: no fee buffer on a venue that takes its fee out of
    what the order receives (Binance), where an order spends exactly its notional."""
    venues = dict(settings.risk.venues)
    for name, sim in settings.executor.venues.items():
        own = venues.get(name)
        if sim.fee_in == "received" and (own is None or "fee_buffer" not in own.model_fields_set):
            venues[name] = LimitOverride(**(own.model_dump(exclude_unset=True) if own else {}), fee_buffer=0.0)
    return settings.risk.model_copy(update={"venues": venues})


class Executor:
    """One executor process; ``run()`` until ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        db: Database,
        gateway: Gateway,
        metrics: ServiceMetrics | None = None,
        run_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.executor
        self.redis = redis
        self.bus = RedisBus(redis, settings.bus, metrics)
        self.store = ExecutorStore(db)
        self.gateway = gateway
        self.metrics = metrics
        self.run_id = run_id or f"{os.getpid():x}{time.time_ns() % 10**9:x}"
        self.guard = PreTradeGuard(
            guarded_limits(settings), now_ns=time.time_ns(), heartbeat_required=settings.mode == "live"
        )
        self._reduce_only: set[str] = set()  # reduce-only orders sent, not yet acknowledged: halts let them rest
        self.books: dict[tuple[str, str], SimBook] = {}
        enabled = self.cfg.strategy_enabled if self.cfg.strategy_enabled is not None else settings.mode == "replay"
        funds = self._free_balance if isinstance(gateway, PaperGateway) else None
        self.strategy = MomentumStrategy(self.cfg, self.run_id, funds) if enabled else None
        rl_on = self.cfg.rl_enabled if self.cfg.rl_enabled is not None else settings.mode == "replay"
        rl_clock = self.cfg.rl_bar_clock or ("receive" if settings.mode == "replay" else None)
        self.rl = RLStrategy(self.cfg, self.run_id, funds, bar_clock=rl_clock) if rl_on else None
        self.arbitrage = build_strategies(settings, self.run_id, self._free_balance)
        self.arbitrage_store = ArbitrageStore(db)
        self.submit_latency_ns: deque[int] = deque(maxlen=100_000)  # intent.ts → handed to the gateway
        self.ready = asyncio.Event()
        self._wake = asyncio.Event()
        gateway.on_report(self._wake.set)  # pushed order updates are stored at once
        self._stopping = asyncio.Event()
        self._consumers: list[Consumer] = []
        self._next_delivery: int | None = None
        self._unstored: list[tuple[list[Report], list[LedgerEntry], list[VenueBalance]]] = []

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for c in self._consumers:
            c.stop()

    def _free_balance(self, venue: str, asset: str) -> float:
        if not isinstance(self.gateway, PaperGateway):
            return 0.0  # unknown without a round trip: the arbitrage strategy then executes sequentially
        wallet = self.gateway.exchange.accounts.wallets.get((venue, "spot"))
        balance = wallet.balances.get(asset) if wallet else None
        return float(balance.free) if balance else 0.0

    # ---- start-up -------------------------------------------------------------------------

    async def restore(self) -> None:
        """Paper: rebuild the simulated venue from what earlier runs stored, or fund it the first time."""
        if not isinstance(self.gateway, PaperGateway):
            return
        exchange, now = self.gateway.exchange, time.time_ns()
        stored = await self.store.balances()
        if not stored:
            for venue, assets in self.cfg.initial_balances.items():
                if venue in exchange.venues:
                    for asset, amount in assets.items():
                        exchange.deposit(venue, asset, amount, now, ref="initial")
            return
        for b in stored:
            exchange.restore_balance(b.exchange, b.wallet, b.asset, b.free + b.locked, b.borrowed, b.interest, now)
        for row in await self.store.db.fetch(
            "SELECT exchange, symbol, margin_mode, amount, entry_price, realized_pnl FROM positions"
        ):
            exchange.positions[(row["exchange"], row["symbol"], row["margin_mode"])] = Position(
                row["exchange"],
                row["symbol"],
                row["margin_mode"],
                row["amount"],
                row["entry_price"],
                row["realized_pnl"],
            )
        for order in await self.store.orders_in(OPEN_STATUSES):
            cost = order.filled * order.avg_price
            exchange.restore_order(order.intent, order.venue_order_id, order.filled, cost, now)
        log.info("restored %d balances and the open orders of the paper venue", len(stored))

    async def restore_halts(self) -> None:
        """Load the halts in force (shared.halts) into the guard before anything can place an order:
        a halt issued while this process was down, or before it crashed, still holds."""
        self.guard.halts = await halts.load(self.redis, self.store.db)
        if len(self.guard.halts):
            log.warning("executor starts halted: %s", [f"{h.id} ({h.reason})" for h in self.guard.halts])

    async def seed_guard(self) -> None:
        """Tell the pre-trade guard what the venue holds before the first intent: balances, positions, orders.

        A live venue's balances (every wallet) and positions are stored too: the risk service starts from them.
        """
        now = time.time_ns()
        balances = await self.gateway.balances()
        self._guard_balances(balances)
        if not isinstance(self.gateway, PaperGateway):
            await self.store.record([], [], balances, self.gateway.positions())
        held: dict[tuple[str, str], float] = {}
        margin: dict[tuple[str, str], float] = {}  # a margin short's buy-back must be seen to reduce it
        for pos in self.gateway.positions():  # spot and margin positions net per base asset
            key = (pos.venue, split_symbol(pos.symbol)[0])
            held[key] = held.get(key, 0.0) + float(pos.amount)
            if pos.margin_mode != "spot":
                margin[key] = margin.get(key, 0.0) + float(pos.amount)
        for (venue, asset), amount in held.items():
            self.guard.set_position(venue, asset, amount)
        for (venue, asset), amount in margin.items():
            self.guard.set_margin_position(venue, asset, amount)
        for o in await self.gateway.open_orders():
            self.guard.on_order_event(OrderEvent(o.client_order_id, o.exchange, o.symbol, o.side, "accepted", now))  # type: ignore[arg-type]

    def _guard_balances(self, balances: Iterable[VenueBalance]) -> None:
        paper = self.gateway.exchange if isinstance(self.gateway, PaperGateway) else None
        margin_venues = set()
        for b in balances:
            if b.wallet == "spot":
                self.guard.set_free(b.exchange, b.asset, float(b.free))
            else:
                margin_venues.add(b.exchange)
        if paper is None:
            return
        for venue in margin_venues:  # new margin orders need the venue's lowest margin level
            levels = [paper.margin_level(v, w) for v, w in paper.accounts.wallets if v == venue and w != "spot"]
            known = [float(x) for x in levels if x is not None]
            self.guard.set_margin_level(venue, min(known) if known else None)

    def _guard_reports(self, reports: list[Report]) -> list[OrderIntent]:
        """Feed order reports to the guard; return cancels for orders that came to rest on a halted venue.

        An order sent just before a halt is acknowledged after it, so the halt's cancels missed it.
        """
        late = []
        for e, _ in reports:
            self.guard.on_order_event(e)
            reduce_only = e.client_order_id in self._reduce_only
            self._reduce_only.discard(e.client_order_id)
            halted = self.guard.halted or self.guard.venue_halted(e.exchange)
            if e.status in ("accepted", "partially_filled") and halted and not reduce_only:
                late.append(
                    OrderIntent(e.client_order_id, e.exchange, e.symbol, e.side, "limit", 0.0, e.ts, cancel=True)
                )
        return late

    async def _send_cancels(self, cancels: list[OrderIntent]) -> None:
        for cancel in cancels:
            await self.gateway.submit(cancel)
        if cancels:
            self._wake.set()

    async def reconcile(self) -> int:
        """Resubmit orders that were claimed but that the venue never received; return how many."""
        pending = await self.store.orders_in(UNSENT_STATUSES)
        await self._wait_for_prices({(o.intent.exchange, o.intent.symbol) for o in pending})
        resent = []
        for order in pending:
            i = order.intent
            known = await self.gateway.knows(i.client_order_id, i.exchange, i.symbol)
            if known is None:  # the venue could not say: look it up until it does, never resend blindly
                self.gateway.track(i)
                continue
            if known:
                continue
            halted = "" if i.reduce_only else self.guard.halted or self.guard.venue_halted(i.exchange)
            if halted:  # a halt that came while this order was in limbo: it is never sent
                reason = pretrade.HALTED if self.guard.halted else pretrade.VENUE_HALTED
                event = OrderEvent(
                    i.client_order_id, i.exchange, i.symbol, i.side, "rejected", time.time_ns(), reason=reason
                )
                await self.store.record([(event, 0)], [], [], [])
                continue
            await self.gateway.submit(i)
            resent.append(i.client_order_id)
        for order in await self.store.orders_in(("unknown",)):  # an earlier run was still looking these up
            self.gateway.track(order.intent)
        if resent:
            log.info("reconciled: resubmitted %d orders the venue never received", len(resent))
        return len(resent)

    async def _wait_for_prices(self, markets: set[tuple[str, str]]) -> None:
        """Wait (bounded) for live prices on these markets: the guard rejects the orders it has no
        price for (risk.no_price), and a restored paper book is not a price."""
        deadline = time.monotonic() + self.cfg.reconcile_book_wait_s
        while time.monotonic() < deadline and not self._stopping.is_set():
            markets = {m for m in markets if m not in self.guard.mids}
            if not markets:
                return
            await asyncio.sleep(0.02)

    # ---- the loops -------------------------------------------------------------------------

    async def run(self) -> None:
        await self.restore_halts()
        await self.restore()
        await self.seed_guard()
        md = self._market_data_consumer()
        tasks = [asyncio.create_task(md.run(), name="market-data")]
        reports = asyncio.create_task(self._reports_loop(), name="reports")
        try:
            await self.reconcile()
            intents = Consumer(
                self.redis,
                [streams.ORDERS_INTENTS],
                self.cfg.group,
                self._on_intents,
                self.settings.bus,
                name=f"executor-{self.run_id}",
                metrics=self.metrics,
            )
            control = Consumer(
                self.redis,
                [streams.RISK_CONTROL],
                f"{self.cfg.group}-control",
                self._on_control,
                self.settings.bus,
                name=f"executor-{self.run_id}",
                metrics=self.metrics,
            )
            self._consumers += [intents, control]
            tasks += [
                asyncio.create_task(intents.run(), name="intents"),
                asyncio.create_task(control.run(), name="control"),
            ]
            if self.arbitrage:
                arb_reports = Consumer(
                    self.redis,
                    [streams.ORDERS_EVENTS],
                    f"{self.cfg.group}-arb",
                    self._on_arbitrage_reports,
                    self.settings.bus,
                    name=f"executor-{self.run_id}",
                    start_id="$",
                    metrics=self.metrics,
                )
                self._consumers.append(arb_reports)
                tasks.append(asyncio.create_task(arb_reports.run(), name="arbitrage-reports"))
            if self.rl:
                tasks.append(asyncio.create_task(self._run_rl(), name="rl-policy"))
            # Ready means every group exists, so what is published from now on reaches us ("$" groups).
            await asyncio.gather(md.ready.wait(), *(c.ready.wait() for c in self._consumers))
            self.ready.set()
            log.info(
                "executor ready (gateway %s, strategy %s)",
                type(self.gateway).__name__,
                "on" if self.strategy else "off",
            )
            await self._stopping.wait()
        finally:
            self.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._wake.set()
            await reports
            await self._flush_reports()

    def _market_data_consumer(self) -> Consumer:
        names = [s for v in self.cfg.market_data_venues for s in (streams.md_book(v), streams.md_trades(v))]
        consumer = Consumer(
            self.redis,
            names,
            self.cfg.market_data_group,
            self._on_market_data,
            self.settings.bus,
            name=f"executor-{self.run_id}",
            start_id="$",
            metrics=self.metrics,
        )
        self._consumers.append(consumer)
        return consumer

    async def _on_market_data(self, deliveries: list[Delivery]) -> None:
        paper = self.gateway if isinstance(self.gateway, PaperGateway) else None
        intents = []
        for delivery in deliveries:
            for m in delivery.messages:
                if isinstance(m, BookUpdate):
                    book = self.books.get((m.exchange, m.symbol))
                    if book is None:
                        book = self.books[(m.exchange, m.symbol)] = SimBook()
                    book.apply(m)
                    if paper and m.exchange in paper.exchange.venues:
                        paper.on_market_data(m)
                    arbitrage = self.arbitrage.get(m.exchange)
                    if arbitrage is not None:
                        intents += arbitrage.on_book(m.symbol, book, m.recv_ts)
                    mid = book.mid()
                    if mid is not None:
                        self.guard.set_mid(m.exchange, m.symbol, float(mid))
                        if self.strategy:
                            intent = self.strategy.on_mid(m.exchange, m.symbol, float(mid), m.recv_ts)
                            if intent:
                                intents.append(intent)
                elif isinstance(m, Trade):
                    if paper and m.exchange in paper.exchange.venues:
                        paper.on_market_data(m)
                    if self.rl:
                        intents += self.rl.on_trade(m)
        if intents:
            await self.bus.publish(streams.ORDERS_INTENTS, intents)
        if paper:
            self._wake.set()  # trades may have filled resting orders
        await self._save_arbitrage()

    async def _run_rl(self) -> None:
        """Follow `policy:updates` (each load runs off the loop; ticks keep going to the old policy),
        starting from the latest promoted policy; idle until one exists."""
        assert self.rl is not None
        rl = self.rl

        async def on_updates(deliveries: list[Delivery]) -> None:
            for update in (m for d in deliveries for m in d.messages if isinstance(m, PolicyUpdate)):
                await rl.load(update.checkpoint_uri, update.policy_id, update.exchange, update.symbol)

        updates = Consumer(
            self.redis,
            [streams.POLICY_UPDATES],
            f"{self.cfg.group}-policy",
            on_updates,
            self.settings.bus,
            name=f"executor-{self.run_id}",
            start_id="$",
            metrics=self.metrics,
        )
        self._consumers.append(updates)
        rl.held.update(await held_by_strategy(self.store.db))  # before any policy trades: no double buying
        following = asyncio.create_task(updates.run(), name="policy-updates")
        row = await latest_promoted(self.store.db)
        if row is None:
            log.info("rl: no promoted policy yet; idle until one is published on %s", streams.POLICY_UPDATES)
        elif rl.active is None:
            await rl.load(row["checkpoint_uri"], row["id"], row["exchange"], row["symbol"])
        await following

    async def _on_arbitrage_reports(self, deliveries: list[Delivery]) -> None:
        """Order reports drive running cycle executions: the next leg, or the unwind after a failed one."""
        intents = []
        for delivery in deliveries:
            for m in delivery.messages:
                arbitrage = self.arbitrage.get(m.exchange) if isinstance(m, OrderEvent) else None
                if arbitrage is not None:
                    intents += arbitrage.on_event(m)  # type: ignore[arg-type]
        if intents:
            await self.bus.publish(streams.ORDERS_INTENTS, intents)
        await self._save_arbitrage()

    async def _save_arbitrage(self) -> None:
        for arbitrage in self.arbitrage.values():
            opportunities, executions = arbitrage.drain()
            if not (opportunities or executions):
                continue
            try:
                await self.arbitrage_store.save(opportunities, executions)
            except Exception:  # records are reports: losing some must not stall market data or orders
                log.exception("storing %d arbitrage records failed", len(opportunities) + len(executions))

    async def _on_intents(self, deliveries: list[Delivery]) -> None:
        intents: dict[str, OrderIntent] = {}
        cancels: list[OrderIntent] = []
        for d in deliveries:
            for m in d.messages:
                if isinstance(m, OrderIntent):
                    if m.cancel:
                        cancels.append(m)
                    else:
                        intents.setdefault(m.client_order_id, m)  # a duplicate within the batch
        fresh = await self._claim(intents)
        if self.metrics and len(fresh) < len(intents):
            self.metrics.error("duplicate_intent")
        rejected, sent = [], []
        for cid in fresh:
            intent = intents[cid]
            reason = self.guard.check(intent, time.time_ns())
            if reason:
                rejected.append(
                    OrderEvent(
                        cid, intent.exchange, intent.symbol, intent.side, "rejected", time.time_ns(), reason=reason
                    )
                )
            else:
                await self.gateway.submit(intent)
                self.submit_latency_ns.append(time.time_ns() - intent.ts)
                if intent.reduce_only:
                    self._reduce_only.add(cid)
            sent.append(intent)
        await self._send_cancels(cancels)
        await self.store.save_orders(sent)
        if rejected:
            await self.store.record([(e, 0) for e in rejected], [], [], [])
            await self.store.publish_outbox(self.redis, self.settings.bus, time.time_ns())
        self._wake.set()

    async def _claim(self, intents: dict[str, OrderIntent]) -> list[str]:
        """Return the client ids this delivery must execute, in order; duplicates are dropped.

        An id already claimed but without an order row was claimed by a run that died before storing
        it: the venue is asked, and the order is sent again only if the venue never received it.
        """
        if not intents:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for cid in intents:
            pipe.set(f"{CLAIM_KEY}{cid}", self.run_id, nx=True, ex=CLAIM_TTL_S)
        won = dict(zip(intents, await pipe.execute(), strict=True))
        retried = [cid for cid, ok in won.items() if not ok]
        if retried:
            stored = await self.store.existing(retried)
            unknown = []
            for cid in retried:
                if cid in stored:
                    continue
                i = intents[cid]
                known = await self.gateway.knows(cid, i.exchange, i.symbol)
                if known is None:  # never resend a claimed id blindly: find out what became of it
                    self.gateway.track(i)
                    unknown.append(i)
                elif not known:
                    won[cid] = True
            await self.store.save_orders(unknown)
        return [cid for cid, ok in won.items() if ok]

    async def _on_control(self, deliveries: list[Delivery]) -> None:
        """Apply halts, resumes, limit changes and heartbeats before any await: the next check sees them."""
        cancels: list[OrderIntent] = []
        for d in deliveries:
            for m in d.messages:
                if not isinstance(m, RiskControl):
                    continue
                cancels += self.guard.on_control(m, time.time_ns())
                if m.action != "heartbeat":
                    log.info(
                        "risk control: %s %s %s %s", m.action, m.exchange or "all venues", m.reason, m.limits or ""
                    )
        await self._send_cancels(cancels)

    async def _reports_loop(self) -> None:
        idle = 0.005 if isinstance(self.gateway, PaperGateway) else 1.0
        next_audit = time.monotonic() + self.cfg.reconcile_interval_s
        while not self._stopping.is_set():
            try:
                await self._flush_reports()
            except Exception:  # a storage outage must not kill the loop; reports stay queued in the venue
                log.exception("storing order reports failed; retrying")
                await asyncio.sleep(1.0)
            if time.monotonic() >= next_audit:
                next_audit = time.monotonic() + self.cfg.reconcile_interval_s
                try:
                    await self._audit()
                except Exception:  # the venue may be unreachable: the next round tries again
                    log.exception("reconciling against the venues failed")
            delay = idle
            dues = [self._next_delivery]
            if isinstance(self.gateway, PaperGateway):
                dues.append(self.gateway.exchange.next_due())
            for due in dues:
                if due is not None:
                    delay = min(delay, max(0.0, (due - time.time_ns()) / 1e9))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _flush_reports(self) -> None:
        # poll, drain_ledger and balances must describe one state: no await may suspend between them
        # (the paper gateway's never do), so the stored balances always equal the stored ledger.
        # What poll and drain_ledger handed over is queued before any other await: if the balances
        # cannot be read (a venue outage), the reports and ledger entries are stored without them.
        reports = await self.gateway.poll()
        ledger = self.gateway.drain_ledger()
        if reports or ledger:
            self._unstored.append((reports, ledger, []))
        late_cancels = self._guard_reports(reports)
        if self._unstored:
            touched = {(x.venue, x.wallet, x.asset) for x in ledger}
            for e, _ in reports:  # locks move without a ledger entry: store the order's assets too
                touched |= {(e.exchange, w, a) for w, a in self._wallet_assets(e)}
            try:
                fresh = await self.gateway.balances()
            except Exception:
                log.exception("reading balances failed; storing the reports without them")
                fresh = []
            balances = [b for b in fresh if (b.exchange, b.wallet, b.asset) in touched]
            self._guard_balances(balances)
            self._unstored.append(([], [], balances))
            all_reports = [r for batch in self._unstored for r in batch[0]]
            all_ledger = [x for batch in self._unstored for x in batch[1]]
            latest = {(b.exchange, b.wallet, b.asset): b for batch in self._unstored for b in batch[2]}
            await self.store.record(all_reports, all_ledger, latest.values(), self.gateway.positions())
            self._unstored.clear()  # kept until stored: a storage outage loses no report
            self._next_delivery = await self.store.next_delivery()
        if self._next_delivery is not None and self._next_delivery <= time.time_ns():
            await self.store.publish_outbox(self.redis, self.settings.bus, time.time_ns())
            self._next_delivery = await self.store.next_delivery()
            await self._publish_notices()
        await self._send_cancels(late_cancels)

    async def _audit(self) -> None:
        """Halt every venue whose balances or open orders differ from what our reports say, naming the
        difference (a RiskEvent ``reconcile_mismatch`` and a RiskControl halt issued by the executor)."""
        now = time.time_ns()
        for venue, diffs in (await self.gateway.audit()).items():
            what = "; ".join(diffs)
            log.error("reconciliation mismatch on %s: %s", venue, what)
            detail: dict[str, float | int | str | bool | None] = {"differences": what, "count": len(diffs)}
            await self.bus.publish(
                streams.RISK_EVENTS, [RiskEvent("reconcile_mismatch", now, "critical", venue, detail=detail)]
            )
            halt = RiskControl(
                "halt",
                now,
                reason=f"reconcile mismatch: {what}",
                exchange=venue,
                issued_by="executor",
                cause="reconcile",
            )
            await self._send_cancels(self.guard.on_control(halt, now))  # in force here before anything else
            await halts.send(self.redis, [halt], maxlen=self.settings.bus.maxlen, db=self.store.db)  # durable

    def _wallet_assets(self, e: OrderEvent) -> list[tuple[str, str]]:
        base, _, quote = e.symbol.partition("/")
        wallets = ["spot", "cross", f"isolated:{e.symbol}", "futures"]
        return [(w, a) for w in wallets for a in (base, quote)]

    async def _publish_notices(self) -> None:
        if not isinstance(self.gateway, PaperGateway) or not self.gateway.exchange.notices:
            return
        notices, self.gateway.exchange.notices = self.gateway.exchange.notices, []
        events = [
            RiskEvent(
                n.kind,
                n.ts,
                "critical" if n.kind == "liquidation" else "warning",
                n.venue,
                detail={"wallet": n.wallet, "margin_level": float(n.margin_level)},
            )
            for n in notices
        ]
        await self.bus.publish(streams.RISK_EVENTS, events)


async def main(settings: Settings) -> None:
    redis_url = settings.redis_url
    db_url = settings.database_url.get_secret_value() if settings.database_url else None
    if not redis_url or not db_url:
        raise SystemExit("executor: REDIS_URL and DATABASE_URL must be set (`tradewind up` sets both)")
    metrics = service_metrics(settings)
    redis = connect_redis(redis_url)
    db = await Database.connect(db_url, settings.storage)
    await db.migrate()
    executor: Executor | None = None
    gateway: Gateway | None = None
    try:
        run_id = f"{os.getpid():x}{time.time_ns() % 10**9:x}"
        gateway = build_gateway(settings, run_id)
        executor = Executor(settings, redis, db, gateway, metrics, run_id=run_id)
        on_stop(executor.stop)
        await executor.run()
    finally:
        if gateway is not None:
            await gateway.close()
        await db.close()
        await redis.aclose()
