"""`tradewind risk simulate`: replay recorded data with an injected crash through detector + hedger.

The portfolio starts with ``initial_value`` on one venue: ``base_fraction`` of it as spot base
inventory, the rest as quote collateral in that venue's margin account (Binance moves spot ↔
margin instantly). Hedge intents pass the same pre-trade guard the executor runs, reach the
venue ``reaction_ms`` later and fill IOC against the replayed (crashed, thinned) book.

Why not the executor's paper exchange: services must not import each other, and moving it to
``shared`` is the lead's call. This model is the small part of it a crash hedge touches — spot
inventory, one short per margin account, taker fees (charged in quote), interest accrued
continuously at the daily rate, liquidation at ``liquidation_level`` (Binance's margin-level
definition) — and says so in its output.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.risk.crash import CrashDetector, Market, Transition
from services.risk.hedge import Actions, Hedger, margin_reduce_amount
from services.risk.replay import NS, CrashProfile, inject, load_messages
from services.risk.replay import Market as Msg
from shared.pretrade import PreTradeGuard, split_symbol
from shared.schemas import BookUpdate, Fill, OrderEvent, OrderIntent, RiskControl
from shared.schemas.messages import OrderStatus
from shared.sections.risk import RiskSettings


@dataclass
class MarginAccount:
    quote: float = 0.0
    debt: float = 0.0  # base borrowed
    interest: float = 0.0  # base owed as interest


@dataclass
class SimPortfolio:
    """Spot inventory on one venue plus a margin account per hedge venue (implements PortfolioView)."""

    venue: str
    base: str
    detector: CrashDetector
    spot_base: float = 0.0
    spot_quote: float = 0.0
    margin: dict[str, MarginAccount] = field(default_factory=dict)
    fees: float = 0.0
    interest_paid: float = 0.0  # quote value of interest repaid

    def spot(self, venue: str, asset: str) -> float:
        return self.spot_base if (venue, asset) == (self.venue, self.base) else 0.0

    def short_debt(self, venue: str, asset: str) -> float:
        acc = self.margin.get(venue)
        return acc.debt + acc.interest if acc and asset == self.base else 0.0

    def margin_capacity(self, venue: str, asset: str, price: float, level: float) -> float:
        acc = self.margin.get(venue)
        if acc is None or price <= 0:
            return 0.0
        # after shorting x more: (quote + x·p) / ((debt + x)·p) >= level
        owed = acc.debt + acc.interest
        return max(0.0, (acc.quote - level * owed * price) / ((level - 1) * price))

    def margin_venues(self) -> list[str]:
        return list(self.margin)

    def resting_bids(self, venue: str) -> list[tuple[str, str]]:
        return []  # the simulation runs no strategy that rests orders

    def margin_level(self, venue: str, price: float) -> float | None:
        acc = self.margin[venue]
        owed = (acc.debt + acc.interest) * price
        return acc.quote / owed if owed > 0 else None

    def equity(self, prices: dict[str, float]) -> float:
        value = self.spot_base * prices[self.venue] + self.spot_quote
        for venue, acc in self.margin.items():
            value += acc.quote - (acc.debt + acc.interest) * prices.get(venue, prices[self.venue])
        return value


def _walk(m: Market, side: str, qty: float, limit: float | None) -> list[tuple[float, float]]:
    """Take up to ``qty`` from the book at prices no worse than ``limit``; the levels are consumed."""
    levels = m.bids if side == "sell" else m.asks
    legs = []
    for price in sorted(levels, reverse=side == "sell"):
        if qty <= 1e-12 or (limit is not None and (price < limit if side == "sell" else price > limit)):
            break
        take = min(qty, levels[price])
        legs.append((price, take))
        qty -= take
        levels[price] -= take
        if levels[price] <= 1e-12:
            del levels[price]
    return legs


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


class Simulation:
    def __init__(self, risk: RiskSettings, config: SimConfig) -> None:
        self.risk = risk
        self.cfg = config
        self.sim = risk.simulation
        self.detector = CrashDetector(risk.crash)
        self.guard = PreTradeGuard(risk)
        self.pending: list[tuple[int, int, OrderIntent]] = []
        self._seq = itertools.count()
        self.transitions: list[Transition] = []
        self.events: list[str] = []
        self.rejections: dict[str, int] = {}
        self.liquidations = 0
        self.margin_reductions = 0
        self.first_hedge_ns: int | None = None
        self.max_short = 0.0
        self.sold_notional = 0.0

    def run(self, messages: list[Msg]) -> dict[str, Any]:
        venue = self.cfg.venue or messages[0].exchange
        symbol = self.cfg.symbol or next(m.symbol for m in messages if m.exchange == venue)
        base, _ = split_symbol(symbol)
        start = next(m.recv_ts for m in messages if m.exchange == venue)
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
        pf = SimPortfolio(venue, base, self.detector)
        hedger = Hedger(self.risk.hedge.model_copy(update={"enabled": self.cfg.hedge}), self.detector, pf, "sim-hedge")
        prices: dict[str, float] = {}
        peak = equity0 = 0.0
        max_dd = 0.0
        last_ns = 0
        daily = self.sim.interest_daily / 86_400 / NS
        for msg in inject(messages, crash):
            now = msg.recv_ts
            self._execute_due(now, pf, hedger, prices)
            if msg.symbol != symbol and split_symbol(msg.symbol)[0] != base:
                continue
            t = self.detector.on_book(msg) if isinstance(msg, BookUpdate) else self.detector.on_trade(msg)
            m = self.detector.market(msg.exchange, msg.symbol)
            if not m.price:
                continue
            prices[msg.exchange] = m.price
            self.guard.set_mid(msg.exchange, msg.symbol, m.price)
            self.guard.on_control(RiskControl("heartbeat", now), now)  # the simulation is the risk service
            if not equity0 and msg.exchange == venue:
                equity0 = self._fund(pf, m.price)
                peak = equity0
            if not equity0:
                continue
            for acc in pf.margin.values():
                acc.interest += acc.debt * daily * max(now - last_ns, 0)
            last_ns = now
            actions = hedger.on_transition(t) if t else hedger.on_tick(msg.exchange, msg.symbol, now)
            if t:
                self.transitions.append(t)
            self._margin_safety(pf, hedger, prices, now)
            self._send(actions, now)
            eq = pf.equity(prices)
            peak = max(peak, eq)
            max_dd = max(max_dd, (peak - eq) / peak)
            self.max_short = max(self.max_short, max((a.debt for a in pf.margin.values()), default=0.0))
        self._execute_due(last_ns + 10 * NS, pf, hedger, prices)
        return self._report(pf, crash, venue, symbol, equity0, pf.equity(prices), max_dd, prices)

    def _fund(self, pf: SimPortfolio, price: float) -> float:
        value = self.sim.initial_value
        pf.spot_base = value * self.sim.base_fraction / price
        quote = value - pf.spot_base * price
        venues = self.cfg.margin_venues or (pf.venue,)
        for v in venues:
            pf.margin[v] = MarginAccount(quote=quote / len(venues))
        self.guard.set_position(pf.venue, pf.base, pf.spot_base)
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
            if intent.strategy and self.first_hedge_ns is None and not intent.cancel:
                self.first_hedge_ns = now
            at = now + int(self.sim.reaction_ms * 1_000_000)
            heapq.heappush(self.pending, (at, next(self._seq), intent))

    def _execute_due(self, now: int, pf: SimPortfolio, hedger: Hedger, prices: dict[str, float]) -> None:
        while self.pending and self.pending[0][0] <= now:
            at, _, intent = heapq.heappop(self.pending)
            event = self._fill(intent, at, pf)
            hedger.on_order_event(event)
            self.guard.on_order_event(event)

    def _fill(self, intent: OrderIntent, at: int, pf: SimPortfolio) -> OrderEvent:
        acc = pf.margin.get(intent.exchange)
        m = self.detector.market(intent.exchange, intent.symbol)
        qty = intent.amount
        if acc is not None and intent.side == "buy":
            qty = min(qty, acc.debt + acc.interest)
        legs = _walk(m, intent.side, qty, intent.price) if acc is not None else []
        fills = []
        for i, (price, amount) in enumerate(legs):
            fee = price * amount * self.sim.taker_fee
            pf.fees += fee
            assert acc is not None
            if intent.side == "sell":
                acc.debt += amount
                acc.quote += price * amount - fee
                self.sold_notional += price * amount
            else:
                acc.quote -= price * amount + fee
                to_interest = min(amount, acc.interest)
                acc.interest -= to_interest
                acc.debt = max(acc.debt - (amount - to_interest), 0.0)
                pf.interest_paid += to_interest * price
            fills.append(Fill(f"{intent.client_order_id}-{i}", price, amount, fee, "quote", at))
        filled = sum(f.amount for f in fills)
        status: OrderStatus = "filled" if filled >= intent.amount - 1e-12 else "cancelled"
        avg = sum(f.amount * f.price for f in fills) / filled if filled else 0.0
        return OrderEvent(
            intent.client_order_id,
            intent.exchange,
            intent.symbol,
            intent.side,
            status,
            at,
            filled=filled,
            avg_price=avg,
            fills=fills,
        )

    def _margin_safety(self, pf: SimPortfolio, hedger: Hedger, prices: dict[str, float], now: int) -> None:
        for venue, acc in pf.margin.items():
            price = prices.get(venue)
            level = pf.margin_level(venue, price) if price else None
            if level is None or price is None:
                continue
            m = self.detector.market(venue, next(s for (v, s) in self.detector.markets if v == venue))
            if level <= self.sim.liquidation_level:
                self.liquidations += 1
                owed = acc.debt + acc.interest
                legs = _walk(m, "buy", owed, None)
                for p, a in legs:
                    acc.quote -= p * a * (1 + self.sim.taker_fee)
                acc.debt = acc.interest = 0.0
                continue
            if level < self.risk.margin_floor and not any(h.in_flight for h in hedger.hedges.values()):
                qty = margin_reduce_amount(acc.quote, acc.debt + acc.interest, price, self.risk.margin_target)
                if qty > 0 and m.ask:
                    self.margin_reductions += 1
                    intent = OrderIntent(
                        f"margin-{now}",
                        venue,
                        m.symbol,
                        "buy",
                        "ioc",
                        qty,
                        now,
                        price=m.ask * 1.01,
                        strategy="margin-safety",
                        margin_mode="cross",
                        reduce_only=True,
                    )
                    self._send(Actions(intents=[intent]), now)

    def _report(
        self,
        pf: SimPortfolio,
        crash: CrashProfile | None,
        venue: str,
        symbol: str,
        equity0: float,
        equity1: float,
        max_dd: float,
        prices: dict[str, float],
    ) -> dict[str, Any]:
        starts = [t for t in self.transitions if t.to_state == "crash" and t.from_state == "normal"]
        injected = [t for t in starts if crash and t.exchange == venue and crash.start_ns <= t.ts <= crash.end_ns]
        detect_ms = (injected[0].ts - crash.start_ns) / 1e6 if injected and crash else None
        hedge_ms = (self.first_hedge_ns - crash.start_ns) / 1e6 if crash and self.first_hedge_ns and injected else None
        outstanding = sum(a.interest for a in pf.margin.values()) * prices.get(venue, 0.0)
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
            "detection_latency_ms": hedge_ms,  # crash start → first hedge order (DESIGN: crash_detection_latency_ms)
            "hedge_size": self.max_short,
            "hedge_notional": self.sold_notional,
            "hedge_left": sum(a.debt + a.interest for a in pf.margin.values()),
            "interest_paid": pf.interest_paid + outstanding,
            "fees_paid": pf.fees,
            "liquidations": self.liquidations,
            "margin_reductions": self.margin_reductions,
            "false_alarms": len(starts) - len(injected),
            "crash_states": len(starts),
            "events": self.events,
            "rejections": self.rejections,
            "transitions": [
                {"exchange": t.exchange, "symbol": t.symbol, "to": t.to_state, "ts": t.ts, "evidence": t.evidence}
                for t in self.transitions
            ],
            "model": "risk-sim: spot + margin short, quote fees, continuous interest, liquidation at margin level",
        }


def simulate(path: Path, risk: RiskSettings, config: SimConfig) -> dict[str, Any]:
    """Run one simulation over a normalized JSON-lines file; return the report."""
    return Simulation(risk, config).run(load_messages(path))
