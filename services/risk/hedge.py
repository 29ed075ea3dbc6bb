"""Crash hedging: stop buying into a crashing venue, short the exposed spot inventory, unwind on recovery.

On a crash of BASE/QUOTE on venue V the hedger blocks new buys on V (``risk:control``
``set_limit block_buys=1``), cancels our resting bids there, and shorts BASE with margin, sized
to the spot BASE held on V times ``ratio`` and capped so the margin account stays at or above
``open_margin_level``. The hedge goes, in order of preference, to a venue that is *not* crashing
but whose price fell with V (at least ``follow_ratio`` of V's fall: it then offsets the loss
with better liquidity), else to V itself: a short where the price does not move hedges nothing.
Orders are IOC limits ``band`` through the touch, in slices, one in flight at a time.

In recovery the target shrinks with the share of the fall still unretraced; back in normal it is
zero and the last buy repays the loan with its interest. Pure: decisions in, intents out.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol

from services.risk.crash import CrashDetector, Market, Transition
from shared.ids import client_order_id
from shared.pretrade import split_symbol
from shared.schemas import OrderEvent, OrderIntent, RiskControl, RiskEvent, RiskEventKind
from shared.sections.risk import HedgeSettings

BLOCK_BUYS = "block_buys"


class PortfolioView(Protocol):
    """What the hedger needs to know about our holdings (the risk service's portfolio, or the simulation's)."""

    def spot(self, venue: str, asset: str) -> float: ...

    def short_debt(self, venue: str, asset: str) -> float: ...

    def margin_capacity(self, venue: str, asset: str, price: float, level: float) -> float: ...

    def margin_venues(self) -> list[str]: ...

    def resting_bids(self, venue: str) -> list[tuple[str, str]]: ...


@dataclass(frozen=True)
class TopUp:
    """Move collateral between two wallets of one venue (spot → cross margin), before any buy-back."""

    venue: str
    asset: str
    amount: float
    ts: int
    from_wallet: str = "spot"
    to_wallet: str = "cross"


@dataclass
class Actions:
    """What one decision asks for: orders and cancels, control messages, risk events, collateral moves."""

    intents: list[OrderIntent] = field(default_factory=list)
    controls: list[RiskControl] = field(default_factory=list)
    events: list[RiskEvent] = field(default_factory=list)
    top_ups: list[TopUp] = field(default_factory=list)

    def extend(self, other: Actions) -> None:
        self.intents += other.intents
        self.controls += other.controls
        self.events += other.events
        self.top_ups += other.top_ups


@dataclass
class Hedge:
    crash_venue: str
    crash_symbol: str
    venue: str
    symbol: str
    base: str
    full: float  # base amount to be short at the bottom
    target: float
    in_flight: str = ""


class Hedger:
    def __init__(
        self, settings: HedgeSettings, detector: CrashDetector, view: PortfolioView, name: str = "risk-hedge"
    ) -> None:
        self.s = settings
        self.detector = detector
        self.view = view
        self.name = name
        self.hedges: dict[tuple[str, str], Hedge] = {}  # by crashing (venue, symbol)
        self._ids = itertools.count(1)

    def on_transition(self, t: Transition) -> Actions:
        """React to a crash state change of one market."""
        out = Actions()
        detail = {k: round(v, 8) for k, v in t.evidence.items()}
        detail["from_state"] = t.from_state  # type: ignore[assignment]
        kinds: dict[str, RiskEventKind] = {"crash": "crash_start", "recovery": "crash_recovery", "normal": "crash_end"}
        kind = kinds[t.to_state]
        severity = "critical" if t.to_state == "crash" else "warning" if t.to_state == "recovery" else "info"
        out.events.append(RiskEvent(kind, t.ts, severity, t.exchange, t.symbol, detail))  # type: ignore[arg-type]
        if t.to_state == "crash" and t.from_state == "normal":
            out.controls.append(
                RiskControl(
                    "set_limit", t.ts, reason=f"crash {t.symbol}", exchange=t.exchange, limits={BLOCK_BUYS: 1.0}
                )
            )
            for client_order_id, symbol in self.view.resting_bids(t.exchange):
                out.intents.append(self._intent(t.exchange, symbol, "buy", 0.0, None, t.ts, cancel=client_order_id))
            base, _ = split_symbol(t.symbol)
            hedged = any(h.crash_venue == t.exchange and h.base == base for h in self.hedges.values())
            if self.s.enabled and not hedged:  # one hedge per venue and asset, however many of its markets crash
                out.extend(self._open(t))
        elif t.to_state == "normal":
            out.controls.append(
                RiskControl(
                    "set_limit", t.ts, reason=f"recovered {t.symbol}", exchange=t.exchange, limits={BLOCK_BUYS: 0.0}
                )
            )
        out.intents += self.on_tick(t.exchange, t.symbol, t.ts).intents
        return out

    def _open(self, t: Transition) -> Actions:
        out = Actions()
        base, _ = split_symbol(t.symbol)
        exposure = self.view.spot(t.exchange, base) * self.s.ratio
        crashing = self.detector.market(t.exchange, t.symbol)
        where = self._choose_venue(crashing)
        if exposure <= 0 or where is None:
            why = "no spot inventory exposed" if exposure <= 0 else "no margin venue follows the crash"
            out.events.append(RiskEvent("hedge_unavailable", t.ts, "warning", t.exchange, t.symbol, {"why": why}))
            return out
        price = where.bid or where.price
        capacity = self.view.margin_capacity(where.exchange, base, price, self.s.open_margin_level)
        full = min(exposure, capacity + self.view.short_debt(where.exchange, base))
        self.hedges[(t.exchange, t.symbol)] = Hedge(
            t.exchange, t.symbol, where.exchange, where.symbol, base, full, full
        )
        detail = {"venue": where.exchange, "symbol": where.symbol, "size": full, "exposure": exposure, "price": price}
        out.events.append(RiskEvent("hedge_open", t.ts, "warning", t.exchange, t.symbol, detail))  # type: ignore[arg-type]
        return out

    def _choose_venue(self, crashing: Market) -> Market | None:
        fall = 1.0 - crashing.price / crashing.ref_price if crashing.ref_price else 0.0
        margin = set(self.view.margin_venues())
        candidates = [m for m in self.detector.by_key[crashing.key] if m.exchange in margin and m.price]
        followers = [
            m
            for m in candidates
            if m is not crashing
            and m.state == "normal"
            and m.horizons[-1].highs
            and 1.0 - m.price / m.horizons[-1].highs[0][1] >= self.s.follow_ratio * fall  # its longest window
        ]
        if followers:
            return max(followers, key=self.detector.depth)
        return crashing if crashing in candidates else None

    def on_tick(self, exchange: str, symbol: str, now: int) -> Actions:
        """Move every hedge touched by this market toward its target; one order in flight per hedge."""
        out = Actions()
        for key, h in list(self.hedges.items()):
            if exchange not in (h.crash_venue, h.venue) or h.in_flight:
                continue
            crashing = self.detector.market(h.crash_venue, h.crash_symbol)
            if crashing.state == "crash":
                h.target = h.full
            elif crashing.state == "recovery":
                fall = crashing.ref_price - crashing.trough
                left = (crashing.ref_price - crashing.price) / fall if fall > 0 else 0.0
                h.target = min(h.target, h.full * min(max(left, 0.0), 1.0))
            else:
                h.target = 0.0
            market = self.detector.market(h.venue, h.symbol)
            held = self.view.short_debt(h.venue, h.base)
            tolerance = 1e-6 * h.full
            if held < h.target - tolerance and market.bid:
                qty = min(h.target - held, self.s.slice_notional / market.bid)
                intent = self._intent(h.venue, h.symbol, "sell", qty, market.bid * (1 - self.s.band), now)
            elif held > h.target + tolerance and market.ask:
                qty = min(held - h.target, self.s.slice_notional / market.ask)
                intent = self._intent(h.venue, h.symbol, "buy", qty, market.ask * (1 + self.s.band), now, reduce=True)
            else:
                if h.target == 0.0 and held <= tolerance:
                    del self.hedges[key]
                    out.events.append(
                        RiskEvent("hedge_closed", now, "info", h.crash_venue, h.crash_symbol, {"venue": h.venue})
                    )
                continue
            h.in_flight = intent.client_order_id
            out.intents.append(intent)
        return out

    def on_order_event(self, event: OrderEvent) -> None:
        """A hedge order finished: the next slice may go."""
        if event.status in ("filled", "cancelled", "rejected"):
            for h in self.hedges.values():
                if h.in_flight == event.client_order_id:
                    h.in_flight = ""

    def _intent(
        self,
        venue: str,
        symbol: str,
        side: str,
        amount: float,
        price: float | None,
        now: int,
        *,
        reduce: bool = False,
        cancel: str = "",
    ) -> OrderIntent:
        return OrderIntent(
            client_order_id=cancel or client_order_id(self.name, now, seq=next(self._ids)),
            exchange=venue,
            symbol=symbol,
            side=side,  # type: ignore[arg-type]
            order_type="ioc",
            amount=amount,
            ts=now,
            price=price,
            strategy=self.name,
            margin_mode=None if cancel else self.s.margin_mode,  # type: ignore[arg-type]
            reduce_only=reduce,
            cancel=bool(cancel),
        )
