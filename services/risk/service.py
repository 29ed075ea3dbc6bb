"""The risk service: watches market data and our orders; halts, hedges and records.

Consumes ``md:book:*``, ``md:trades:*`` and ``md:status`` (new entries only) and
``orders:intents`` / ``orders:events`` (from the start, to rebuild the portfolio). Every
``heartbeat_s`` it publishes a heartbeat on ``risk:control`` (executors halt when it stops),
halts venues whose feed is stale or resyncing and resumes them when data flows again, halts
everything on an intraday or total drawdown breach (a human resumes), tops up a margin account
whose level falls under ``margin_floor`` from the venue's spot wallet (a ``WalletTransfer`` the
executor makes, asked on ``orders:transfers``; its outcome comes back on ``orders:events``) and buys
back the shorts only for what that cannot cover, runs the crash detector and hedger, and writes its
state to ``tw:risk:state`` for `tradewind status` / `tradewind risk state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from services.risk.crash import CrashDetector
from services.risk.hedge import Actions, Hedger, TopUp
from services.risk.margin import MarginSafety
from services.risk.portfolio import Portfolio
from services.risk.record import Recorder
from services.risk.restore import NoLiveBalances, save_peaks, wait_for_portfolio
from shared import halts
from shared.bus import TRANSIENT, Bus, Consumer, Delivery, when_redis_answers
from shared.config import Settings
from shared.halts import Halt, HaltSet
from shared.ids import client_order_id
from shared.runtime import ServiceContext, on_stop, service_context
from shared.schemas import (
    BookUpdate,
    OrderEvent,
    OrderIntent,
    RiskControl,
    RiskEvent,
    Status,
    Trade,
    WalletTransfer,
    streams,
)
from shared.signing import RISK, ControlGate, Signer, SigningError

log = logging.getLogger(__name__)

NS = 1_000_000_000
HALT_FEED_STATES = frozenset({"stale", "gap", "disconnected", "error"})
RESUME_FEED_STATES = frozenset({"connected", "resynced"})
FEED, STALE, DRAWDOWN = "feed", "stale", "drawdown"  # the causes of this service's own halts
TOP_UP = "margin_top_up"


def transfer_request(top_up: TopUp) -> WalletTransfer:
    """The transfer a top-up asks of the executor; its id is the top-up's own (one per venue and instant)."""
    tid = client_order_id("tu", top_up.ts, key=top_up.venue)
    return WalletTransfer(
        tid, top_up.venue, top_up.asset, top_up.amount, top_up.from_wallet, top_up.to_wallet, top_up.ts, reason=TOP_UP
    )


class RiskService:
    """The decisions, separate from the plumbing: every handler returns what to publish."""

    def __init__(self, settings: Settings, clock: Callable[[], int] = time.time_ns) -> None:
        self.risk = settings.risk
        self.clock = clock
        balances = settings.executor.initial_balances if settings.mode != "live" else {}
        self.portfolio = Portfolio.from_balances(balances)
        self.detector = CrashDetector(self.risk.crash)
        self.hedger = Hedger(self.risk.hedge, self.detector, self.portfolio)
        self.last_data: dict[str, int] = {}  # venue -> wall-clock ns of its last message
        self.halts = HaltSet()  # every active halt, its own and humans' (durable: shared.halts)
        self.unconfirmed_feeds: set[str] = set()  # feed halts restored at start: lifted by the next data
        self.margin = MarginSafety(self.risk, self.detector, self.portfolio)

    def use_portfolio(self, portfolio: Portfolio) -> None:
        """Take over a restored portfolio; its holdings' marks come with the first books (grace: stale_after_s)."""
        portfolio.marks_grace_until_ns = self.clock() + int(self.risk.stale_after_s * NS)
        self.portfolio = portfolio
        self.hedger.view = portfolio
        self.margin.view = portfolio

    def restore_halts(self, stored: HaltSet) -> None:
        """Take over the halts stored before a restart. A feed halt's "resynced" may have been missed
        meanwhile, so the next market data from that venue lifts it."""
        self.halts = stored
        self.unconfirmed_feeds = {h.exchange for h in stored.by_cause(FEED) if h.exchange}

    def venue_halt(self, venue: str) -> Halt | None:
        """This service's own halt of ``venue`` (feed or stale), if any."""
        return next((h for h in self.halts if h.exchange == venue and h.cause in (FEED, STALE)), None)

    @property
    def drawdown_halt(self) -> str:
        return "; ".join(h.reason for h in self.halts.by_cause(DRAWDOWN))

    # ---- market data --------------------------------------------------------------------------

    def on_market(self, messages: list[Any]) -> Actions:
        out = Actions()
        now = self.clock()
        for msg in messages:
            if isinstance(msg, Status):
                out.extend(self._on_status(msg, now))
                continue
            if not isinstance(msg, (BookUpdate, Trade)):
                continue
            self.last_data[msg.exchange] = now
            own = self.venue_halt(msg.exchange)
            if own is not None and (own.cause == STALE or msg.exchange in self.unconfirmed_feeds):
                self.unconfirmed_feeds.discard(msg.exchange)
                out.extend(self._resume_venue(msg.exchange, now, "market data flowing again"))
            t = self.detector.on_book(msg) if isinstance(msg, BookUpdate) else self.detector.on_trade(msg)
            m = self.detector.market(msg.exchange, msg.symbol)
            if m.price:
                self.portfolio.on_mid(msg.symbol, m.price)
            out.extend(
                self.hedger.on_transition(t) if t else self.hedger.on_tick(msg.exchange, msg.symbol, msg.recv_ts)
            )
        return out

    def _on_status(self, status: Status, now: int) -> Actions:
        own = self.venue_halt(status.exchange)
        if status.state in HALT_FEED_STATES and own is None:
            return self._halt_venue(status.exchange, now, FEED, f"feed {status.state}", status.detail)
        if status.state in RESUME_FEED_STATES and own is not None and own.cause == FEED:
            return self._resume_venue(status.exchange, now, f"feed {status.state}")
        return Actions()

    def _halt_venue(self, venue: str, now: int, cause: str, reason: str, detail: str = "") -> Actions:
        control = RiskControl("halt", now, reason=reason, exchange=venue, issued_by="risk", cause=cause)
        self.halts.apply(control)
        return Actions(
            controls=[control],
            events=[
                RiskEvent("halt", now, "warning", venue, None, {"reason": reason, "detail": detail, "cause": cause})
            ],
        )

    def _resume_venue(self, venue: str, now: int, why: str) -> Actions:
        own = self.venue_halt(venue)
        assert own is not None
        control = RiskControl("resume", now, reason=why, exchange=venue, issued_by="risk", cause=own.cause)
        self.halts.apply(control)
        return Actions(
            controls=[control],
            events=[RiskEvent("resume", now, "info", venue, None, {"reason": why, "halted_for": own.reason})],
        )

    # ---- orders -------------------------------------------------------------------------------

    def on_orders(self, messages: list[Any]) -> None:
        for msg in messages:
            if isinstance(msg, OrderIntent):
                self.portfolio.on_intent(msg)
            elif isinstance(msg, OrderEvent):
                self.portfolio.on_order_event(msg)
                self.hedger.on_order_event(msg)
            elif isinstance(msg, WalletTransfer):
                self.portfolio.on_transfer(msg, self.clock())

    # ---- humans' halts and resumes (risk:control) --------------------------------------------------

    def on_control(self, messages: list[Any]) -> Actions:
        """Follow others' halts and resumes (humans', the executor's). A forced resume that lifts a
        drawdown halt is a human accepting the loss: the drawdown peaks restart from today's equity,
        or the next tick would halt again at once. A plain resume leaves this service's halts alone."""
        out = Actions()
        for msg in messages:
            if not isinstance(msg, RiskControl) or msg.issued_by == "risk":
                continue
            drawdown = self.drawdown_halt
            change = self.halts.apply(msg)
            if drawdown and any(i.startswith(f"{DRAWDOWN}:") for i in change.removed):
                out.events.append(self._reset_drawdown(msg, drawdown))
        return out

    def _reset_drawdown(self, resume: RiskControl, cleared: str) -> RiskEvent:
        now = self.clock()
        equity = self.portfolio.equity()
        self.portfolio.peak_day = self.portfolio.peak_total = equity
        detail = {"cleared": cleared, "equity": equity, "by": resume.issued_by, "reason": resume.reason}
        return RiskEvent("drawdown_reset", now, "warning", detail=detail)  # type: ignore[arg-type]

    # ---- the periodic checks ---------------------------------------------------------------------

    def tick(self) -> Actions:
        """Heartbeat with this service's active halts re-asserted, stale feeds, drawdown, margin levels."""
        now = self.clock()
        out = Actions(controls=[RiskControl("heartbeat", now, issued_by="risk")])
        out.controls += [  # re-asserted: an executor that missed a halt, or lost it, has it again now
            RiskControl("halt", h.ts, reason=h.reason, exchange=h.exchange, issued_by="risk", cause=h.cause)
            for h in self.halts
            if h.cause in (FEED, STALE, DRAWDOWN)
        ]
        stale_ns = int(self.risk.stale_after_s * NS)
        for venue, last in self.last_data.items():
            if now - last > stale_ns and self.venue_halt(venue) is None:
                silent = f"silent {(now - last) / NS:.1f}s"
                out.extend(self._halt_venue(venue, now, STALE, "stale market data", silent))
        equity, intraday, total = self.portfolio.drawdowns(now)
        if not self.drawdown_halt and (intraday >= self.risk.drawdown_intraday or total >= self.risk.drawdown_total):
            which = "intraday" if intraday >= self.risk.drawdown_intraday else "total"
            control = RiskControl("halt", now, reason=f"{which} drawdown", issued_by="risk", cause=DRAWDOWN)
            self.halts.apply(control)
            detail = {"equity": equity, "intraday": intraday, "total": total}
            out.controls.append(control)
            out.events.append(RiskEvent("drawdown_halt", now, "critical", detail=detail))  # type: ignore[arg-type]
        self.portfolio.settle_transfers(now)
        margin = self.margin.check(now)
        for top_up in margin.top_ups:  # asked of the executor; counted in the margin level from now on
            request = transfer_request(top_up)
            self.portfolio.expect_transfer(request)
            for e in margin.events:
                if e.kind == "margin_low" and e.exchange == top_up.venue:
                    e.detail.update(transfer_id=request.transfer_id, top_up_by="executor")
        out.extend(margin)
        return out

    def state(self) -> dict[str, Any]:
        """What `tradewind status` shows of risk."""
        now = self.clock()
        equity, intraday, total = self.portfolio.drawdowns(now)
        venues = {}
        halted_venues = {h.exchange for h in self.halts if h.exchange is not None}
        for venue in sorted({*self.portfolio.balances, *self.portfolio.margin, *self.last_data, *halted_venues}):
            gross, net = self.portfolio.exposure(venue)
            value, unpriced = self.portfolio.venue_equity(venue)
            venues[venue] = {
                "equity": value,
                "gross_exposure": gross,
                "net_exposure": net,
                "realized_pnl": self.portfolio.realized.get(venue, 0.0),
                "unrealized_pnl": self.portfolio.unrealized(venue),
                "margin_level": self.portfolio.margin_level(venue),
                "halted": self.halts.reason(venue),
                "data_age_s": (now - self.last_data[venue]) / NS if venue in self.last_data else None,
                "unpriced": unpriced,
            }
        return {
            "ts": now,
            "halted": self.halts.reason(None),
            "halts": halts.describe(self.halts),
            "equity": equity,
            "drawdown_intraday": intraday,
            "drawdown_total": total,
            "crashes": {f"{v}:{s}": m.state for (v, s), m in self.detector.markets.items() if m.state != "normal"},
            "hedges": {f"{v}:{s}": {"venue": h.venue, "target": h.target} for (v, s), h in self.hedger.hedges.items()},
            "venues": venues,
        }


async def publish(bus: Bus, recorder: Recorder, actions: Actions) -> None:
    if actions.top_ups:
        await bus.publish_many([(streams.ORDERS_TRANSFERS, transfer_request(t)) for t in actions.top_ups])
    if actions.intents:
        await bus.publish_many([(streams.ORDERS_INTENTS, i) for i in actions.intents])
    await recorder.emit(actions.events, actions.controls)


async def main(settings: Settings) -> None:
    stopping = asyncio.Event()
    on_stop(stopping.set)
    await run(settings, stopping)


async def run(settings: Settings, stopping: asyncio.Event) -> None:
    """Run until ``stopping`` is set; the batch in flight is finished and acked.

    PostgreSQL is optional, except live: live risk starts from the venues' stored balances."""
    live = settings.mode == "live"
    why = "live risk starts from the venues' stored balances" if live else ""
    async with service_context(settings, "risk", database="required" if live else "optional", database_why=why) as svc:
        await watch(svc, stopping)


async def watch(svc: ServiceContext, stopping: asyncio.Event) -> None:
    settings, redis, bus, db, metrics = svc.settings, svc.redis, svc.bus, svc.db, svc.metrics
    try:
        signer = Signer.of(settings.control, RISK)
    except SigningError as exc:  # unsigned heartbeats would be refused: executors would halt anyway
        raise SystemExit(f"risk: {exc}") from None
    recorder = Recorder(bus, db, signer)
    gate = ControlGate(settings.control, bus, "risk", heartbeat_timeout_s=settings.risk.heartbeat_timeout_s)
    service = RiskService(settings)
    # Before the first decision: the halts in force, the holdings and the drawdown peaks as stored.
    wait_s = settings.bus.start_wait_s
    service.restore_halts(await when_redis_answers(lambda: halts.load(redis, db), "risk: load the halts", wait_s))
    if db is not None:
        try:
            service.use_portfolio(await wait_for_portfolio(db, settings, settings.risk.live_balances_wait_s))
        except NoLiveBalances as exc:
            raise SystemExit(str(exc)) from None
    if len(service.halts):
        log.info("risk: restored halts %s", [h.id for h in service.halts])
    lock = asyncio.Lock()  # handlers and the ticker share the service state

    async def on_market(batch: list[Delivery]) -> None:
        async with lock:
            actions = service.on_market([m for d in batch for m in d.messages])
        await publish(bus, recorder, actions)

    async def on_orders(batch: list[Delivery]) -> None:
        async with lock:
            service.on_orders([m for d in batch for m in d.messages])

    async def on_control(batch: list[Delivery]) -> None:  # verified by the gate; stale ones skipped
        async with lock:
            actions = service.on_control(gate.fresh(m for d in batch for m in d.messages))
        await publish(bus, recorder, actions)

    md_streams = [s for v in settings.risk.market_data_venues for s in (streams.md_book(v), streams.md_trades(v))]
    consumers = [
        Consumer(
            redis,
            [*md_streams, streams.MD_STATUS],
            f"{settings.risk.group}-md",
            on_market,
            settings.bus,
            start_id="$",
            metrics=metrics,
        ),
        Consumer(
            redis,
            [streams.ORDERS_INTENTS, streams.ORDERS_EVENTS],
            settings.risk.group,
            on_orders,
            settings.bus,
            metrics=metrics,
        ),
        Consumer(
            redis,
            [streams.RISK_CONTROL],
            f"{settings.risk.group}-control",
            on_control,
            settings.bus,
            start_id="$",
            metrics=metrics,
            verify=gate.verify,
        ),
    ]

    async def ticker() -> None:
        while not stopping.is_set():
            async with lock:
                actions = service.tick()
                state = service.state()
            backoff = 0.1
            while True:  # Redis restarting: publish the same decisions again (their ids make that a no-op)
                try:
                    await publish(bus, recorder, actions)
                    await redis.set(streams.RISK_STATE, json.dumps(state))
                    break
                except TRANSIENT as exc:
                    if stopping.is_set():
                        raise
                    log.warning("risk: lost Redis publishing its tick (%s); again in %.1fs", exc, backoff)
                    metrics.reconnect("redis")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), backoff)
                    backoff = min(backoff * 2, 5.0)
            metrics.record_risk(state)  # the PnL and exposure gauges Grafana shows
            if db is not None:
                await save_peaks(db, service.portfolio)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), settings.risk.heartbeat_s)
        for c in consumers:
            c.stop()

    limits = settings.risk.limits.model_dump()
    start = RiskEvent("service_start", time.time_ns(), detail={**limits, "mode": settings.mode})
    await when_redis_answers(lambda: recorder.emit([start]), "risk: record its start", wait_s)
    log.info("risk: watching %d market-data streams; heartbeat every %.1fs", len(md_streams), settings.risk.heartbeat_s)
    await asyncio.gather(ticker(), *(c.run() for c in consumers))
