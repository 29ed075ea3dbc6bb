"""`tradewind risk simulate`: replay recorded data with an injected crash through risk and the paper exchange.

The crash hits the inventory's venue alone (scope ``venue``: the other venues are the calm composite
it diverges from) or every venue of the asset at once (scope ``market``: there is none).

The portfolio starts with ``initial_value`` on one venue: ``base_fraction`` of it as spot base
inventory, the rest as quote collateral in the cross-margin wallet of each hedge venue (by
default the crashing venue itself; Binance moves spot ↔ margin instantly). The replayed data
drives the crash detector and the paper exchange (``shared.paper``: the executor's simulator,
with its venue fees, latencies, hourly interest, borrowing limits and liquidation engine); the
hedger's intents pass the same pre-trade guard the executor runs, reach the paper exchange
``reaction_ms`` later (the bus hop), and fill against the replayed — crashed, thinned — book. The
margin rule's top-ups are internal transfers on the paper exchange, made at once.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from services.risk.crash import CrashDetector, Transition
from services.risk.hedge import Actions, Hedger
from services.risk.margin import MarginSafety
from services.risk.replay import NS, CrashProfile, DataError, MarketMessage, inject, load_messages
from services.risk.sim_strategies import (
    Ledger,
    LoopContext,
    LoopStrategy,
    StrategyFactory,
    TradeListener,
    rejection,
)
from shared.paper import PaperExchange
from shared.pretrade import PreTradeGuard, split_symbol
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, RiskControl, Trade
from shared.schemas.messages import MarginMode
from shared.sections.executor import VenueSim
from shared.sections.risk import RiskSettings

MARGIN: MarginMode = "cross"
Scope = Literal["venue", "market"]
HEDGER = "sim-hedge"


class PaperView:
    """The paper exchange's wallets as the risk rules see them (``hedge.PortfolioView``, ``margin.MarginView``).

    ``prices``: venue -> base -> last price, the simulation's marks (quote: 1).
    """

    def __init__(self, exchange: PaperExchange, margin_venues: list[str], prices: dict[str, dict[str, float]]) -> None:
        self.ex = exchange
        self.venues = margin_venues
        self.prices = prices

    def _balance(self, venue: str, wallet: str, asset: str) -> tuple[float, float]:
        """(holdings, liabilities) of one asset in one wallet, without creating the wallet."""
        w = self.ex.accounts.wallets.get((venue, wallet))
        b = w.balances.get(asset) if w else None
        return (float(b.free + b.locked), float(b.borrowed + b.interest)) if b else (0.0, 0.0)

    def spot(self, venue: str, asset: str) -> float:
        return self._balance(venue, "spot", asset)[0]

    def spot_free(self, venue: str, asset: str) -> float | None:
        w = self.ex.accounts.wallets.get((venue, "spot"))
        b = w.balances.get(asset) if w else None
        return float(b.free) if b else 0.0

    def short_debt(self, venue: str, asset: str) -> float:
        return self._balance(venue, MARGIN, asset)[1]

    def margin_capacity(self, venue: str, asset: str, price: float, level: float) -> float:
        if venue not in self.venues or price <= 0:
            return 0.0
        assets, liabilities = self.margin_values(venue, {asset: price})
        # after shorting x more: (assets + x·p) / (liabilities + x·p) >= level
        return max(0.0, (assets - level * liabilities) / ((level - 1) * price))

    def margin_venues(self) -> list[str]:
        return list(self.venues)

    def resting_bids(self, venue: str) -> list[tuple[str, str]]:
        return [(o.client_order_id, o.symbol) for o in self.ex.open_orders(venue) if o.side == "buy"]

    def margin_level(self, venue: str) -> float | None:
        level = self.ex.margin_level(venue, MARGIN) if (venue, MARGIN) in self.ex.accounts.wallets else None
        return float(level) if level is not None else None

    def margin_assets(self, venue: str) -> float:
        return self.margin_values(venue, self.prices.get(venue, {}))[0]

    def margin_debts(self, venue: str) -> dict[str, float]:
        w = self.ex.accounts.wallets.get((venue, MARGIN))
        debts = {asset: float(b.borrowed + b.interest) for asset, b in w.balances.items()} if w else {}
        return {asset: debt for asset, debt in debts.items() if debt > 0}

    def top_up_funds(self, venue: str) -> tuple[str, float] | None:
        """The venue's valuation asset (the margin wallet's quote) free in its spot wallet."""
        if venue not in self.venues:
            return None
        quote = self.ex.venue(venue).valuation_asset
        w = self.ex.accounts.wallets.get((venue, "spot"))
        b = w.balances.get(quote) if w else None
        return (quote, float(b.free)) if b and b.free > 0 else None

    def margin_values(self, venue: str, prices: dict[str, float]) -> tuple[float, float]:
        """Assets and liabilities of the venue's margin wallet, valued with ``prices`` (quote: 1)."""
        w = self.ex.accounts.wallets.get((venue, MARGIN))
        assets = liabilities = 0.0
        for asset, b in w.balances.items() if w else []:
            p = prices.get(asset, 1.0)
            assets += float(b.free + b.locked) * p
            liabilities += float(b.borrowed + b.interest) * p
        return assets, liabilities


@dataclass(frozen=True)
class SimConfig:
    crash_depth: float = 0.3
    fall_s: float = 5.0
    recover_s: float = 60.0
    crash_at_s: float = 120.0
    venue: str | None = None
    symbol: str | None = None
    hedge: bool = True
    margin_venues: tuple[str, ...] = ()
    seed: int = 7
    scope: Scope = "venue"  # venue: only the inventory's venue crashes; market: every venue of the asset
    spot_quote: float = 0.0  # share of the value held as quote in the spot wallet (strategies, margin top-ups)


class Simulation:
    def __init__(
        self,
        risk: RiskSettings,
        venues: dict[str, VenueSim],
        config: SimConfig,
        strategies: StrategyFactory | None = None,
    ) -> None:
        self.risk = risk
        self.strategy_factory = strategies
        self.strategies: list[LoopStrategy] = []
        self.ledger = Ledger([])
        self.view: PaperView | None = None
        self.venue_sims = venues
        self.cfg = config
        self.sim = risk.simulation
        self.detector = CrashDetector(risk.crash)
        self.guard = PreTradeGuard(risk)
        self.pending: list[tuple[int, int, OrderIntent]] = []
        self._seq = itertools.count()
        self.transitions: list[Transition] = []
        self.events: list[str] = []
        self.rejections: dict[str, int] = {}
        self.margin_reductions = 0
        self.top_ups = 0
        self.first_hedge_ns: int | None = None
        self.max_short = 0.0
        self.sold_notional = 0.0

    def run(self, messages: list[MarketMessage]) -> dict[str, Any]:
        venue = self.cfg.venue or messages[0].exchange
        on_venue = [m for m in messages if m.exchange == venue]
        if not on_venue:
            found = sorted({m.exchange for m in messages})
            raise DataError(f"--venue {venue}: no messages of it in the data; found {', '.join(found)}")
        symbol = self.cfg.symbol or on_venue[0].symbol
        if not any(m.symbol == symbol for m in on_venue):
            found = sorted({m.symbol for m in on_venue})
            raise DataError(f"--symbol {symbol}: no {venue} messages of it in the data; found {', '.join(found)}")
        base, quote = split_symbol(symbol)
        start = on_venue[0].recv_ts
        span_s = (on_venue[-1].recv_ts - start) / NS
        if self.cfg.crash_depth > 0 and self.cfg.crash_at_s >= span_s:
            raise DataError(
                f"no crash injected: the {venue} data spans {span_s:.1f} s, and the crash starts "
                f"--crash-at {self.cfg.crash_at_s:g} s after its first message; pass --crash-at below {span_s:.0f} "
                "(or longer data) to test the detector"
            )
        crash = None
        if self.cfg.crash_depth > 0:
            crashed = {m.exchange for m in messages if split_symbol(m.symbol)[0] == base}
            crash = CrashProfile(
                frozenset(crashed if self.cfg.scope == "market" else {venue}),
                start + int(self.cfg.crash_at_s * NS),
                self.cfg.crash_depth,
                self.cfg.fall_s,
                self.cfg.recover_s,
                self.sim.thin_liquidity,
            )
        venues = {m.exchange for m in messages}
        sims = {v: self.venue_sims.get(v, VenueSim()).model_copy(update={"valuation_asset": quote}) for v in venues}
        ex = PaperExchange(sims, seed=self.cfg.seed, id_prefix="S")
        margin_venues = list(self.cfg.margin_venues or (venue,))
        prices: dict[str, dict[str, float]] = {}  # venue -> base -> last price
        view = PaperView(ex, margin_venues, prices)
        hedger = Hedger(self.risk.hedge.model_copy(update={"enabled": self.cfg.hedge}), self.detector, view, HEDGER)
        if self.strategy_factory:
            markets = tuple(sorted({(m.exchange, m.symbol) for m in messages}))
            self.strategies = self.strategy_factory(LoopContext(view.spot_free, venue, symbol, markets))
        self.ledger = Ledger(self.strategies)
        self.view = view
        margin = MarginSafety(self.risk, self.detector, view)  # the risk service's rule, on its heartbeat
        heartbeat_ns, next_beat = int(self.risk.heartbeat_s * NS), 0
        equity0 = peak = max_dd = 0.0
        funded = False
        last_ns = start
        for msg in inject(messages, crash):
            now = last_ns = msg.recv_ts
            self._submit_due(now, ex)
            if split_symbol(msg.symbol)[0] != base:
                continue
            if isinstance(msg, BookUpdate):
                ex.on_book(msg)
                t = self.detector.on_book(msg)
            else:
                ex.on_trade(msg)
                t = self.detector.on_trade(msg)
            self._deliver(ex.poll(now), hedger, now)
            m = self.detector.market(msg.exchange, msg.symbol)
            if not m.price or (msg.symbol != symbol and msg.exchange == venue):
                continue
            prices.setdefault(msg.exchange, {})[base] = m.price
            self.guard.set_mid(msg.exchange, msg.symbol, m.price)
            self.guard.on_control(RiskControl("heartbeat", now), now)  # the simulation is the risk service
            if not funded:
                if msg.exchange != venue or not m.bid:
                    continue
                funded = True
                equity0 = peak = self._fund(ex, venue, base, quote, margin_venues, m.price, now)
            actions = hedger.on_transition(t) if t else hedger.on_tick(msg.exchange, msg.symbol, now)
            if t:
                self.transitions.append(t)
            if now >= next_beat:
                next_beat = now + heartbeat_ns
                actions.extend(margin.check(now))
            self._send(actions, now)
            for top_up in actions.top_ups:  # an internal transfer: instant on the venue
                ex.move(top_up.venue, top_up.asset, round(top_up.amount, 8), top_up.from_wallet, MARGIN, now)
                self.top_ups += 1
            for strategy in self.strategies:  # the book is trading: the strategies act on it, through the guard
                if isinstance(msg, BookUpdate):
                    self._trade(strategy.name, strategy.on_book(msg, ex.book(msg.exchange, msg.symbol)), now)
                elif isinstance(strategy, TradeListener) and isinstance(msg, Trade):
                    self._trade(strategy.name, strategy.on_trade(msg), now)
            eq = self._equity(ex, venue, base, prices)
            peak = max(peak, eq)
            max_dd = max(max_dd, (peak - eq) / peak)
            self.max_short = max(self.max_short, max(view.short_debt(v, base) for v in margin_venues))
        self._submit_due(last_ns + 10 * NS, ex)
        self._deliver(ex.poll(last_ns + 10 * NS), hedger, last_ns + 10 * NS)
        self.margin_reductions = margin.reductions
        return self._report(ex, view, crash, venue, symbol, equity0, self._equity(ex, venue, base, prices), max_dd)

    def _fund(
        self, ex: PaperExchange, venue: str, base: str, quote: str, margin_venues: list[str], price: float, now: int
    ) -> float:
        value = self.sim.initial_value
        amount = round(value * self.sim.base_fraction / price, 8)
        ex.deposit(venue, base, amount, now)
        spot_quote = round(value * self.cfg.spot_quote, 8)
        if spot_quote:
            ex.deposit(venue, quote, spot_quote, now)
        collateral = round((value - amount * price - spot_quote) / len(margin_venues), 8)
        for v in margin_venues:
            ex.deposit(v, quote, collateral, now, wallet=MARGIN)
        self.guard.set_position(venue, base, amount)
        for asset in (base, quote):
            self.guard.set_free(venue, asset, float(amount if asset == base else spot_quote))
        return value

    @staticmethod
    def _equity(ex: PaperExchange, venue: str, base: str, prices: dict[str, dict[str, float]]) -> float:
        """Net value of every wallet, base marked at its own venue's last price (quote: 1)."""
        value = 0.0
        for (v, _), w in ex.accounts.wallets.items():
            p = prices.get(v, prices.get(venue, {})).get(base) or prices[venue][base]
            for asset, b in w.balances.items():
                mark = p if asset == base else 1.0
                value += float(b.free + b.locked - b.borrowed - b.interest) * mark
        return value

    def _send(self, actions: Actions, now: int) -> list[OrderEvent]:
        """Pass the intents through the guard towards the venue; return the reports of those it rejected."""
        rejected = []
        for control in actions.controls:
            self.guard.on_control(control, now)
        self.events += [e.kind for e in actions.events]
        for intent in actions.intents:
            reason = self.guard.check(intent, now)
            if reason:
                self.rejections[reason] = self.rejections.get(reason, 0) + 1
                rejected.append(rejection(intent, now, reason))
                continue
            if intent.strategy == HEDGER and self.first_hedge_ns is None and not intent.cancel:
                self.first_hedge_ns = now
            at = now + int(self.sim.reaction_ms * 1_000_000)
            heapq.heappush(self.pending, (at, next(self._seq), intent))
        return rejected

    def _submit_due(self, now: int, ex: PaperExchange) -> None:
        while self.pending and self.pending[0][0] <= now:
            at, _, intent = heapq.heappop(self.pending)
            ex.submit(intent, max(at, ex.now))

    def _deliver(self, events: list[OrderEvent], hedger: Hedger, now: int) -> None:
        for event in events:
            hedger.on_order_event(event)
            self.guard.on_order_event(event)
            self.ledger.on_event(event)
            if event.side == "sell" and event.client_order_id.startswith(HEDGER):
                self.sold_notional += sum(f.price * f.amount for f in event.fills)
            if self.strategies and self.view is not None:
                for asset in split_symbol(event.symbol):  # what the executor learns from the venue's balances
                    self.guard.set_free(event.exchange, asset, self.view.spot_free(event.exchange, asset) or 0.0)
            for strategy in self.strategies:
                self._trade(strategy.name, strategy.on_order_event(event), now)

    def _trade(self, name: str, intents: list[OrderIntent], now: int) -> None:
        """Send a strategy's intents; one the guard rejects is reported to the strategies, as the executor does."""
        if not intents:
            return
        rejected = self._send(Actions(intents=intents), now)
        self.ledger.sent(name, intents, len(rejected))
        for event in rejected:
            for strategy in self.strategies:
                self._trade(strategy.name, strategy.on_order_event(event), now)

    def _report(
        self,
        ex: PaperExchange,
        view: PaperView,
        crash: CrashProfile | None,
        venue: str,
        symbol: str,
        equity0: float,
        equity1: float,
        max_dd: float,
    ) -> dict[str, Any]:
        base, _ = split_symbol(symbol)
        starts = [t for t in self.transitions if t.to_state == "crash" and t.from_state == "normal"]
        during = [t for t in starts if crash and t.exchange in crash.venues and crash.start_ns <= t.ts <= crash.end_ns]
        injected = [t for t in during if t.exchange == venue]
        detect_ms = (injected[0].ts - crash.start_ns) / 1e6 if injected and crash else None
        hedge_ms = (self.first_hedge_ns - crash.start_ns) / 1e6 if crash and self.first_hedge_ns and injected else None
        price = self.detector.market(venue, symbol).price
        interest = sum(-float(e.delta) for e in ex.accounts.ledger if e.kind == "interest" and e.asset == base) * price
        fees = sum(-float(e.delta) * (price if e.asset == base else 1.0) for e in ex.accounts.ledger if e.kind == "fee")
        return {
            "venue": venue,
            "symbol": symbol,
            "crash_depth": crash.depth if crash else 0.0,
            "hedge": self.cfg.hedge,
            "initial_value": equity0,
            "final_value": equity1,
            "final_pnl": equity1 - equity0,
            "max_drawdown": max_dd,
            "detected": bool(injected),
            "detect_latency_ms": detect_ms,
            "detection_latency_ms": hedge_ms,  # crash start → first hedge order (bench: crash_detection_latency_ms)
            "hedge_size": max(self.max_short, *(view.short_debt(v, base) for v in view.margin_venues())),
            "hedge_notional": self.sold_notional,
            "hedge_left": sum(view.short_debt(v, base) for v in view.margin_venues()),
            "interest_paid": interest,
            "fees_paid": fees,
            "liquidations": sum(1 for n in ex.notices if n.kind == "liquidation"),
            "margin_calls": sum(1 for n in ex.notices if n.kind == "margin_call"),
            "margin_reductions": self.margin_reductions,
            "margin_top_ups": self.top_ups,
            "strategies": [s.name for s in self.strategies],
            "strategy_orders": sum(a.orders for a in self.ledger.accounts.values()),
            "per_strategy": self.ledger.report(lambda m: getattr(self.detector.markets.get(m), "price", None)),
            "scope": self.cfg.scope,
            "false_alarms": len(starts) - len(during),
            "crash_states": len(starts),
            "events": self.events,
            "rejections": self.rejections,
            "transitions": [
                {"exchange": t.exchange, "symbol": t.symbol, "to": t.to_state, "ts": t.ts, "evidence": t.evidence}
                for t in self.transitions
            ],
        }


def simulate(
    data: Path | Sequence[Path],
    risk: RiskSettings,
    config: SimConfig,
    venues: dict[str, VenueSim] | None = None,
) -> dict[str, Any]:
    """Run one simulation over normalized JSON-lines files (merged by receive time);
    ``venues``: the paper exchange's venue models."""
    paths = [data] if isinstance(data, Path) else list(data)
    return run_messages(merge([load_messages(p) for p in paths]), risk, config, venues)


def run_messages(
    messages: list[MarketMessage],
    risk: RiskSettings,
    config: SimConfig,
    venues: dict[str, VenueSim] | None = None,
    strategies: StrategyFactory | None = None,
) -> dict[str, Any]:
    """Run one simulation over messages in receive order; ``strategies``: trading in the loop, if given."""
    from shared.sections.executor import default_venues

    return Simulation(risk, venues if venues is not None else default_venues(), config, strategies).run(messages)


def merge(parts: list[list[MarketMessage]]) -> list[MarketMessage]:
    """Several sources' messages in one receive-time order (each part already sorted)."""
    return parts[0] if len(parts) == 1 else list(heapq.merge(*parts, key=lambda m: m.recv_ts))
