"""`tradewind risk simulate`: replay recorded data with an injected crash through risk and the paper exchange.

The portfolio starts with ``initial_value`` on one venue: ``base_fraction`` of it as spot base
inventory, the rest as quote collateral in the cross-margin wallet of each hedge venue (by
default the crashing venue itself; Binance moves spot ↔ margin instantly). The replayed data
drives the crash detector and the paper exchange (``shared.paper``: the executor's simulator,
with its venue fees, latencies, hourly interest, borrowing limits and liquidation engine); the
hedger's intents pass the same pre-trade guard the executor runs, reach the paper exchange
``reaction_ms`` later (the bus hop), and fill against the replayed — crashed, thinned — book.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.risk.crash import CrashDetector, Transition
from services.risk.hedge import Actions, Hedger
from services.risk.margin import MarginSafety
from services.risk.replay import NS, CrashProfile, DataError, MarketMessage, inject, load_messages
from shared.paper import PaperExchange
from shared.pretrade import PreTradeGuard, split_symbol
from shared.schemas import BookUpdate, OrderIntent, RiskControl
from shared.schemas.messages import MarginMode
from shared.sections.executor import VenueSim
from shared.sections.risk import RiskSettings

MARGIN: MarginMode = "cross"


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


class Simulation:
    def __init__(self, risk: RiskSettings, venues: dict[str, VenueSim], config: SimConfig) -> None:
        self.risk = risk
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
            crash = CrashProfile(
                venue,
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
        hedger = Hedger(
            self.risk.hedge.model_copy(update={"enabled": self.cfg.hedge}), self.detector, view, "sim-hedge"
        )
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
            self._deliver(ex.poll(now), hedger)
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
            eq = self._equity(ex, venue, base, prices)
            peak = max(peak, eq)
            max_dd = max(max_dd, (peak - eq) / peak)
            self.max_short = max(self.max_short, max(view.short_debt(v, base) for v in margin_venues))
        self._submit_due(last_ns + 10 * NS, ex)
        self._deliver(ex.poll(last_ns + 10 * NS), hedger)
        self.margin_reductions = margin.reductions
        return self._report(ex, view, crash, venue, symbol, equity0, self._equity(ex, venue, base, prices), max_dd)

    def _fund(
        self, ex: PaperExchange, venue: str, base: str, quote: str, margin_venues: list[str], price: float, now: int
    ) -> float:
        value = self.sim.initial_value
        amount = round(value * self.sim.base_fraction / price, 8)
        ex.deposit(venue, base, amount, now)
        collateral = round((value - amount * price) / len(margin_venues), 8)
        for v in margin_venues:
            ex.deposit(v, quote, collateral, now, wallet=MARGIN)
        self.guard.set_position(venue, base, amount)
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

    def _send(self, actions: Actions, now: int) -> None:
        for control in actions.controls:
            self.guard.on_control(control, now)
        self.events += [e.kind for e in actions.events]
        for intent in actions.intents:
            reason = self.guard.check(intent, now)
            if reason:
                self.rejections[reason] = self.rejections.get(reason, 0) + 1
                continue
            if self.first_hedge_ns is None and not intent.cancel:
                self.first_hedge_ns = now
            at = now + int(self.sim.reaction_ms * 1_000_000)
            heapq.heappush(self.pending, (at, next(self._seq), intent))

    def _submit_due(self, now: int, ex: PaperExchange) -> None:
        while self.pending and self.pending[0][0] <= now:
            at, _, intent = heapq.heappop(self.pending)
            ex.submit(intent, max(at, ex.now))

    def _deliver(self, events: list[Any], hedger: Hedger) -> None:
        for event in events:
            hedger.on_order_event(event)
            self.guard.on_order_event(event)
            if event.side == "sell":
                self.sold_notional += sum(f.price * f.amount for f in event.fills)

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
        injected = [t for t in starts if crash and t.exchange == venue and crash.start_ns <= t.ts <= crash.end_ns]
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
            "false_alarms": len(starts) - len(injected),
            "crash_states": len(starts),
            "events": self.events,
            "rejections": self.rejections,
            "transitions": [
                {"exchange": t.exchange, "symbol": t.symbol, "to": t.to_state, "ts": t.ts, "evidence": t.evidence}
                for t in self.transitions
            ],
        }


def simulate(
    path: Path, risk: RiskSettings, config: SimConfig, venues: dict[str, VenueSim] | None = None
) -> dict[str, Any]:
    """Run one simulation over a normalized JSON-lines file; ``venues``: the paper exchange's venue models."""
    from shared.sections.executor import default_venues

    return Simulation(risk, venues if venues is not None else default_venues(), config).run(load_messages(path))
