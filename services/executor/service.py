"""The executor service: intents in, orders out, every outcome stored and published once.

Start-up order matters for exactly-once execution: restore the venue (the paper venue from
PostgreSQL), reconcile orders claimed but possibly never sent (ask the venue; resubmit what it
never got), and only then consume new intents and wallet transfers (``services.executor.transfers``).
Market data (`md:book:*`, `md:trades:*`) goes to the gateway (a simulated venue fills against it)
and to the strategies the settings turn on (``services.executor.strategies``), whose intents go
straight to the order path (``services.executor.order_path``: journaled to ``orders:intents`` in the
claim's round trip).

Every intent passes ``shared.pretrade.PreTradeGuard`` inline; its rejection reason reaches
``orders:events``. The guard learns mids from the books, free balances and positions from the
gateway, resting orders from the order reports, and halts, limit changes and heartbeats from
``risk:control``, signed ones only (``shared.signing``); a halt's cancels go straight to the
gateway. A live executor halts new orders when the risk service is silent for
``risk.heartbeat_timeout_s`` from start; a paper or replay executor only once it has heard the
risk service (`tradewind up --only executor` still trades).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from services.executor import guarding
from services.executor.gateway import Gateway, Report, VenueBalance
from services.executor.gateways import build_gateway
from services.executor.order_path import OrderPath
from services.executor.store import OPEN_STATUSES, UNSENT_STATUSES, ExecutorStore
from services.executor.strategies.base import StrategyContext
from services.executor.strategies.host import StrategyHost
from services.executor.transfers import Transfers
from shared import halts, pretrade
from shared.bus import Consumer, Delivery, RedisBus, Verify, when_redis_answers
from shared.config import Settings
from shared.metrics import ServiceMetrics
from shared.paper import LedgerEntry
from shared.pretrade import PreTradeGuard
from shared.runtime import ServiceTasks, service_context
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, PolicyUpdate, RiskControl, RiskEvent, Trade, streams
from shared.signing import RISK, ControlGate, Signer, SigningError
from shared.storage import Database

log = logging.getLogger(__name__)

# The strategies' groups on orders:events and policy:updates, after the executor's group; "-arb" is the
# name the first strategy fed order reports gave it, kept so a running stack's group is not orphaned.
ORDER_EVENTS_GROUP, POLICY_GROUP = "-arb", "-policy"


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
            guarding.guarded_limits(settings), now_ns=time.time_ns(), heartbeat_required=settings.mode == "live"
        )
        # risk:control: every entry verified (shared.signing); this executor's own halts signed with the risk key
        self.gate = ControlGate(
            settings.control,
            self.bus,
            "executor",
            heartbeat_timeout_s=settings.risk.heartbeat_timeout_s,
            extra=self.guard.refusal,
        )
        try:
            self.signer: Signer | None = Signer.of(settings.control, RISK)
        except SigningError as exc:
            log.warning("executor: %s; its reconcile halts will hold in this process only", exc)
            self.signer = None
        self.strategies = StrategyHost(
            StrategyContext(
                settings,
                self.run_id,
                self.store,
                gateway.free_balance,
                publish=self.bus.publish,
                withdraw=gateway.withdraw,
                knows=gateway.knows,
            )
        )
        self.ready = asyncio.Event()
        self._wake = asyncio.Event()
        self.orders = OrderPath(self.bus, self.store, gateway, self.guard, self.run_id, self._wake.set, metrics)
        self.submit_latency_ns = self.orders.submit_latency_ns  # intent.ts → handed to the gateway
        self.transfers = Transfers(redis, settings.bus, gateway, self.run_id, self._wake.set)
        gateway.on_report(self._wake.set)  # pushed order updates are stored at once
        self._stopping = asyncio.Event()
        self.reconciled = False  # until start-up reconciliation is done, no audit: it would take a half-done reference
        self._consumers: list[Consumer] = []
        self._next_delivery: int | None = None
        self._unstored: list[tuple[list[Report], list[LedgerEntry], list[VenueBalance]]] = []

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for c in self._consumers:
            c.stop()

    # ---- start-up -------------------------------------------------------------------------

    async def restore(self) -> None:
        """Rebuild the venue's state from what earlier runs stored (the paper venue; funded the first time)."""
        await self.gateway.restore(self.store, self.cfg.initial_balances)

    async def restore_halts(self) -> None:
        """Load the halts in force (shared.halts) into the guard before anything can place an order:
        a halt issued while this process was down, or before it crashed, still holds."""
        self.guard.halts = await when_redis_answers(
            lambda: halts.load(self.redis, self.store.db), "executor: load the halts", self.settings.bus.start_wait_s
        )
        if len(self.guard.halts):
            log.warning("executor starts halted: %s", [f"{h.id} ({h.reason})" for h in self.guard.halts])

    async def seed_guard(self) -> None:
        """Tell the pre-trade guard what the venue holds before the first intent: balances, positions, orders.

        A live venue's balances (every wallet) and positions are stored too: the risk service starts from them.
        """
        balances = await self.gateway.balances()
        guarding.learn_balances(self.guard, self.gateway, balances)
        await self.gateway.record_start(self.store, balances)
        await guarding.learn_positions_and_orders(self.guard, self.gateway)

    async def reconcile(self) -> int:
        """Resubmit orders that were claimed but that the venue never received (return how many); look up
        those of unknown outcome; follow those an earlier run left resting (they may have filled meanwhile)."""
        pending = await self.store.orders_in(UNSENT_STATUSES)
        resting = await self.store.orders_in(OPEN_STATUSES)  # read before this run changes any status
        await self._wait_for_prices({(o.intent.exchange, o.intent.symbol) for o in pending})
        resent = []
        for order in pending:
            i = order.intent
            known = await self.gateway.knows(i.client_order_id, i.exchange, i.symbol, i.margin_mode)
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
        for order in resting:  # resting when an earlier run stopped
            await self.gateway.follow(order)
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
        venues = self.cfg.market_data_venues
        md = self._consumer(
            [s for v in venues for s in (streams.md_book(v), streams.md_trades(v))],
            self.cfg.market_data_group,
            self._on_market_data,
            "$",
        )
        # Every loop is watched: one that dies stops the executor loudly (the supervisor restarts it).
        watched = ServiceTasks("executor")
        watched.start(md.run(), "market-data")
        reports = watched.start(self._reports_loop(), "reports")
        try:
            await self.reconcile()
            self.reconciled = True
            self.orders.open = True  # in-process intents now skip the stream's hop (still journaled on it)
            group = self.cfg.group
            self._consumer([streams.ORDERS_INTENTS], group, self.orders.on_intents)
            self._consumer([streams.ORDERS_TRANSFERS], f"{group}-transfers", self.transfers.on_transfers)
            self._consumer([streams.RISK_CONTROL], f"{group}-control", self._on_control, verify=self.gate.verify)
            if self.strategies.wants("order_event"):
                self._consumer([streams.ORDERS_EVENTS], group + ORDER_EVENTS_GROUP, self._on_order_events, "$")
            if self.strategies.wants("policy"):
                self._consumer([streams.POLICY_UPDATES], group + POLICY_GROUP, self._on_policies, "$")
            for c in self._consumers[1:]:
                watched.start(c.run(), c.streams[0])
            watched.start(self._start_strategies(), "strategies", may_finish=True)
            # Ready means every group exists, so what is published from now on reaches us ("$" groups).
            await watched.until(asyncio.gather(*(c.ready.wait() for c in self._consumers)))
            self.ready.set()
            log.info(
                "executor ready (gateway %s, strategies %s)",
                type(self.gateway).__name__,
                ", ".join(self.strategies.by_name) or "none",
            )
            await watched.until(self._stopping.wait())
        finally:
            self.stop()
            await self.strategies.stop()
            await asyncio.gather(*(t for t in watched.tasks if t is not reports), return_exceptions=True)
            self._wake.set()
            await asyncio.gather(reports, return_exceptions=True)
            await self._flush_reports()

    def _consumer(
        self,
        names: list[str],
        group: str,
        handler: Callable[[list[Delivery]], Awaitable[None]],
        start_id: str = "0",
        verify: Verify | None = None,
    ) -> Consumer:
        consumer = Consumer(
            self.redis,
            names,
            group,
            handler,
            self.settings.bus,
            name=f"executor-{self.run_id}",
            start_id=start_id,
            metrics=self.metrics,
            verify=verify,
        )
        self._consumers.append(consumer)
        return consumer

    async def _on_market_data(self, deliveries: list[Delivery]) -> None:
        intents: list[OrderIntent] = []
        for m in (m for d in deliveries for m in d.messages):
            if isinstance(m, BookUpdate):
                book = self.strategies.apply(m)
                self.gateway.on_market_data(m)
                mid = book.mid()
                if mid is not None:
                    self.guard.set_mid(m.exchange, m.symbol, float(mid))
                intents += self.strategies.on_book(m, book)
            elif isinstance(m, Trade):
                self.gateway.on_market_data(m)
                intents += self.strategies.on_trade(m)
        await self.orders.direct(intents)
        await self.strategies.flush()

    async def _on_order_events(self, deliveries: list[Delivery]) -> None:
        events = (m for d in deliveries for m in d.messages if isinstance(m, OrderEvent))
        await self.orders.direct(self.strategies.on_order_events(events))
        await self.strategies.flush()

    async def _on_policies(self, deliveries: list[Delivery]) -> None:
        updates = (m for d in deliveries for m in d.messages if isinstance(m, PolicyUpdate))
        await self.orders.direct(await self.strategies.on_policies(updates))

    async def _start_strategies(self) -> None:
        await self.orders.direct(await self.strategies.start())

    async def _on_control(self, deliveries: list[Delivery]) -> None:
        """Apply halts, resumes, limit changes and heartbeats before any await: the next check sees them.
        A halt then waits for the orders checked before it to be placed and cancels what rests (one placed
        meanwhile when its acknowledgement arrives); only then is the entry acknowledged (`tradewind halt`
        waits for that).

        Every entry here passed ``self.gate.verify`` (signed, within its signer's authority, no replay);
        stale ones, signed before the window, are skipped: the durable halt set covers those."""
        cancels: list[OrderIntent] = []
        halting = False
        for m in self.gate.fresh(m for d in deliveries for m in d.messages):
            cancels += self.guard.on_control(m, time.time_ns())
            halting |= m.action == "halt"
            if m.action != "heartbeat":
                log.info(
                    "risk control: %s %s %s %s (%s)",
                    m.action,
                    m.exchange or "all venues",
                    m.reason,
                    m.limits or "",
                    m.signer,
                )
        if halting:
            await self.orders.placed()
        await self.orders.send_cancels(cancels)

    async def _reports_loop(self) -> None:
        idle = self.gateway.poll_interval_s
        next_audit = time.monotonic() + self.cfg.reconcile_interval_s
        while not self._stopping.is_set():
            try:
                await self._flush_reports()
            except Exception:  # a storage outage must not kill the loop; reports stay queued in the venue
                log.exception("storing order reports failed; retrying")
                await asyncio.sleep(1.0)
            if self.reconciled and time.monotonic() >= next_audit:  # never before start-up reconciliation
                next_audit = time.monotonic() + self.cfg.reconcile_interval_s
                try:
                    await self._audit()
                except Exception:  # the venue may be unreachable: the next round tries again
                    log.exception("reconciling against the venues failed")
            delay = idle
            for due in (self._next_delivery, self.gateway.next_due()):
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
        late_cancels = guarding.late_cancels(self.guard, reports, self.orders.reduce_only)
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
            guarding.learn_balances(self.guard, self.gateway, balances)
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
        await self.orders.send_cancels(late_cancels)

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
            await self.orders.send_cancels(self.guard.on_control(halt, now))  # in force here before anything else
            if self.signer is None:
                log.error(
                    "reconcile halt of %s not published: no risk key to sign it (TRADEWIND_CONTROL__RISK_KEY)", venue
                )
                continue
            await halts.send(self.redis, [halt], signer=self.signer, maxlen=self.settings.bus.maxlen, db=self.store.db)

    def _wallet_assets(self, e: OrderEvent) -> list[tuple[str, str]]:
        base, _, quote = e.symbol.partition("/")
        wallets = ["spot", "cross", f"isolated:{e.symbol}", "futures"]
        return [(w, a) for w in wallets for a in (base, quote)]

    async def _publish_notices(self) -> None:
        events = self.gateway.notices()  # margin calls and liquidations the venue raised itself
        if events:
            await self.bus.publish(streams.RISK_EVENTS, events)


async def main(settings: Settings) -> None:
    async with service_context(settings, "executor") as svc:
        run_id = f"{os.getpid():x}{time.time_ns() % 10**9:x}"
        gateway = build_gateway(settings, run_id)
        try:
            executor = Executor(settings, svc.redis, svc.database, gateway, svc.metrics, run_id=run_id)
            svc.on_stop(executor.stop)
            await executor.run()
        finally:
            await gateway.close()
