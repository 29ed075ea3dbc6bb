"""Flash-crash detector: pure, fed one market-data message at a time, per venue and symbol.

Signals, each computed in O(1) amortised per message:

- velocity, over each horizon of ``windows_s`` (5, 30, 120 s by default: flash crashes last
  seconds to minutes): the fall from the horizon's highest price, and that fall in units of the
  horizon's volatility (1-second returns, EWMA variance, floored for quiet markets, scaled by
  the square root of the horizon);
- depth: bid value within ``depth_band`` of mid against its running average;
- spread: against its running average (floored at 1 bp, so a one-tick widening is not news);
- flow: (taker sells - taker buys) / taker volume over the triggering horizon;
- divergence: price against the median of the same asset's price on other venues, net of their
  usual basis (a crash on one venue; when every venue falls together there is no calm venue and
  the other signals carry the verdict).

A crash starts on a velocity trigger on any horizon (``min_drop`` deep and ``z_threshold``
volatilities) corroborated by ``confirmations`` of the other signals, or on a divergence of
``divergence_alone`` from the composite. States go normal → crash → recovery → normal (a new low
in recovery goes back to crash); every transition is a ``Transition`` with its evidence.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from shared.schemas import BookUpdate, Trade
from shared.sections.risk import CrashSettings

State = Literal["normal", "crash", "recovery"]
NS = 1_000_000_000
_USD = {"USD", "USDT", "USDC", "BUSD", "FDUSD", "TUSD", "DAI"}


def asset_key(symbol: str) -> str:
    """Markets that price the same thing: BTC/USDT on one venue and BTC/USD on another."""
    base, _, quote = symbol.partition("/")
    return f"{base}/{'USD' if quote in _USD else quote}"


@dataclass(frozen=True, slots=True)
class Transition:
    exchange: str
    symbol: str
    from_state: State
    to_state: State
    ts: int
    evidence: dict[str, float]


@dataclass(slots=True)
class Horizon:
    """One velocity horizon of one market: the window's highest price and its taker flow."""

    ns: int
    sqrt_s: float
    highs: deque[tuple[int, float]] = field(default_factory=deque)  # monotonic: window maximum at [0]
    flow: deque[tuple[int, float]] = field(default_factory=deque)  # (ts, +sell / -buy amount)
    sell: float = 0.0
    total: float = 0.0

    def slide(self, ts: int, price: float) -> None:
        highs = self.highs
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append((ts, price))
        horizon = ts - self.ns
        while highs[0][0] < horizon:
            highs.popleft()
        flow = self.flow
        while flow and flow[0][0] < horizon:
            _, signed = flow.popleft()
            self.total -= abs(signed)
            if signed > 0:
                self.sell -= signed

    def add_flow(self, ts: int, signed: float) -> None:
        self.flow.append((ts, signed))
        self.total += abs(signed)
        if signed > 0:
            self.sell += signed

    def imbalance(self) -> float:
        """(sells - buys) / volume of the window's taker trades; 0 without trades."""
        return (2 * self.sell - self.total) / self.total if self.total > 1e-12 else 0.0

    def reset(self, ts: int, price: float) -> None:
        self.highs.clear()
        self.highs.append((ts, price))


@dataclass(slots=True)
class Market:
    """Running statistics of one venue's market: price, highs, trough, crash state.

    What the crash detector watches, not what an order must respect: that is the arbitrage
    engine's ``Market`` (a spot market's rules: base, quote, steps, minimums).
    """

    exchange: str
    symbol: str
    key: str
    horizons: list[Horizon]
    state: State = "normal"
    price: float = 0.0
    bid: float = 0.0
    ask: float = 0.0
    started_ns: int = 0
    updated_ns: int = 0
    lows: deque[tuple[int, float]] = field(default_factory=deque)  # shortest horizon, monotonic: minimum at [0]
    var_1s: float = 0.0
    sample_ns: int = 0
    sample_price: float = 0.0
    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)
    depth_avg: float = 0.0
    spread_avg: float = 0.0
    spread: float = 0.0
    basis: float = 1.0  # usual price / composite
    basis_n: int = 0
    ref_price: float = 0.0  # the pre-crash high
    trough: float = 0.0
    trough_ns: int = 0
    crash_ns: int = 0

    @property
    def highs(self) -> deque[tuple[int, float]]:
        """The shortest horizon's highs (the hedger asks how far a venue fell lately)."""
        return self.horizons[0].highs


class CrashDetector:
    """Per-market crash state machine over trades and book updates of many venues."""

    def __init__(self, settings: CrashSettings) -> None:
        self.s = settings
        self.markets: dict[tuple[str, str], Market] = {}
        self.by_key: dict[str, list[Market]] = {}
        self.windows_s = sorted(settings.windows_s)
        self.stale_ns = int(settings.stale_composite_s * NS)
        self.calm_ns = int(settings.calm_s * NS)
        self.warmup_ns = int(settings.warmup_s * NS)
        self._decay_per_s = math.log(2) / settings.vol_halflife_s

    def market(self, exchange: str, symbol: str) -> Market:
        m = self.markets.get((exchange, symbol))
        if m is None:
            horizons = [Horizon(int(w * NS), math.sqrt(w)) for w in self.windows_s]
            m = self.markets[(exchange, symbol)] = Market(exchange, symbol, asset_key(symbol), horizons)
            self.by_key.setdefault(m.key, []).append(m)
        return m

    def state(self, exchange: str, symbol: str) -> State:
        m = self.markets.get((exchange, symbol))
        return m.state if m else "normal"

    # ---- inputs ---------------------------------------------------------------------------

    def on_book(self, update: BookUpdate) -> Transition | None:
        """Feed a book update (snapshot or delta); returns a state change, if any."""
        m = self.market(update.exchange, update.symbol)
        if update.snapshot:
            m.bids = dict(update.bids)
            m.asks = dict(update.asks)
            m.bid = max(m.bids, default=0.0)
            m.ask = min(m.asks, default=0.0)
        else:
            m.bid = _apply(m.bids, update.bids, m.bid, higher=True)
            m.ask = _apply(m.asks, update.asks, m.ask, higher=False)
        if not m.bid or not m.ask or m.ask <= m.bid:
            return None
        mid = 0.5 * (m.bid + m.ask)
        m.spread = max((m.ask - m.bid) / mid, 1e-4)
        if m.state == "normal":
            m.spread_avg = m.spread if not m.spread_avg else 0.98 * m.spread_avg + 0.02 * m.spread
        return self._on_price(m, mid, update.recv_ts)

    def depth(self, m: Market) -> float:
        """Bid value within ``depth_band`` of the best bid (computed on demand: it walks the side)."""
        floor = m.bid * (1 - self.s.depth_band)
        return sum(p * a for p, a in m.bids.items() if p >= floor)

    def on_trade(self, trade: Trade) -> Transition | None:
        """Feed a trade: its price moves the price series, its side the flow imbalance."""
        m = self.market(trade.exchange, trade.symbol)
        signed = trade.amount if trade.side == "sell" else -trade.amount
        for h in m.horizons:
            h.add_flow(trade.recv_ts, signed)
        return self._on_price(m, trade.price, trade.recv_ts)

    # ---- the state machine ------------------------------------------------------------------

    def _on_price(self, m: Market, price: float, ts: int) -> Transition | None:
        if not m.started_ns:
            m.started_ns = m.sample_ns = ts
            m.sample_price = price
        m.price = price
        m.updated_ns = ts
        self._slide(m, price, ts)
        if ts - m.started_ns < self.warmup_ns:
            self._learn(m, price, ts)
            return None
        div = self._divergence(m, ts)
        if m.state == "normal":
            return self._judge(m, price, ts, div)
        self._learn(m, price, ts)
        if price < m.trough:
            m.trough, m.trough_ns = price, ts
            if m.state == "recovery":
                return self._move(m, "crash", ts, drop=1.0 - price / m.ref_price, divergence=div)
            return None
        fall = m.ref_price - m.trough
        retraced = (price - m.trough) / fall if fall > 0 else 1.0
        # calm: no new low for calm_s, the short window's range small, no longer dislocated from other venues
        calm = (
            ts - m.trough_ns >= self.calm_ns
            and m.highs[0][1] / m.lows[0][1] - 1.0 < self.s.min_drop / 2
            and (div is None or div > -self.s.divergence)
        )
        if m.state == "crash" and (retraced >= self.s.recovery_bounce or calm):
            return self._move(m, "recovery", ts, retraced=retraced, trough=m.trough, ref_price=m.ref_price)
        if m.state == "recovery" and (price >= m.ref_price * (1 - self.s.normal_within) or calm):
            return self._move(m, "normal", ts, retraced=retraced, duration_s=(ts - m.crash_ns) / NS, divergence=div)
        return None

    def _judge(self, m: Market, price: float, ts: int, div: float | None) -> Transition | None:
        """Normal state: does this price start a crash?"""
        vol = max(math.sqrt(m.var_1s), self.s.vol_floor)
        alone = div is not None and div <= -self.s.divergence_alone
        for h in m.horizons:
            high = h.highs[0][1]
            drop = 1.0 - price / high
            z = drop / (vol * h.sqrt_s)
            if not alone and (drop < self.s.min_drop or z < self.s.z_threshold):
                continue
            # only now look at the other signals (depth walks the book)
            confirmations = self._confirmations(m, h, div)
            if alone or confirmations >= self.s.confirmations:
                m.ref_price, m.trough, m.trough_ns, m.crash_ns = high, price, ts, ts
                horizon_s = h.ns / NS
                return self._move(
                    m, "crash", ts, drop=drop, z=z, horizon_s=horizon_s, confirmations=confirmations, divergence=div
                )
        self._learn(m, price, ts)
        return None

    def _slide(self, m: Market, price: float, ts: int) -> None:
        for h in m.horizons:
            h.slide(ts, price)
        lows = m.lows
        while lows and lows[-1][1] >= price:
            lows.pop()
        lows.append((ts, price))
        horizon = ts - m.horizons[0].ns
        while lows[0][0] < horizon:
            lows.popleft()

    def _learn(self, m: Market, price: float, ts: int) -> None:
        """Sample 1-second returns and bid depth, after the verdict: a crash never teaches itself."""
        elapsed = (ts - m.sample_ns) / NS
        if elapsed < 1.0:
            return
        if m.state == "normal":
            r = math.log(price / m.sample_price)
            w = math.exp(-self._decay_per_s * elapsed)
            m.var_1s = w * m.var_1s + (1 - w) * r * r / elapsed
            if m.bids:
                depth = self.depth(m)
                m.depth_avg = depth if not m.depth_avg else 0.95 * m.depth_avg + 0.05 * depth
        m.sample_ns, m.sample_price = ts, price

    def _composite(self, m: Market, ts: int) -> float | None:
        others = [
            o.price
            for o in self.by_key[m.key]
            if o is not m and o.state == "normal" and o.price and ts - o.updated_ns <= self.stale_ns
        ]
        if not others:
            return None
        others.sort()
        n = len(others)
        return others[n // 2] if n % 2 else 0.5 * (others[n // 2 - 1] + others[n // 2])

    def _divergence(self, m: Market, ts: int) -> float | None:
        composite = self._composite(m, ts)
        if composite is None:
            return None
        ratio = m.price / composite
        if not m.basis_n:
            m.basis = ratio
        div = ratio / m.basis - 1.0
        # Learn the usual basis (spot vs perp, USDT vs USD) from calm markets, never from a dislocation.
        if m.state == "normal" and abs(div) < self.s.divergence:
            m.basis_n += 1
            m.basis += (ratio - m.basis) / min(m.basis_n, 500)
        return div

    def _confirmations(self, m: Market, h: Horizon, div: float | None) -> int:
        s = self.s
        n = 0
        if m.depth_avg and self.depth(m) < s.depth_collapse * m.depth_avg:
            n += 1
        if m.spread_avg and m.spread > s.spread_blowout * m.spread_avg:
            n += 1
        if h.imbalance() >= s.flow_imbalance:
            n += 1
        if div is not None and div <= -s.divergence:
            n += 1
        return n

    def evidence(self, m: Market, ts: int) -> dict[str, float]:
        """Every signal's current value, for a transition's record."""
        high = m.highs[0][1] if m.highs else m.price
        return {
            "price": m.price,
            "window_high": high,
            "window_drop": 1.0 - m.price / high if high else 0.0,
            "vol_1s": math.sqrt(m.var_1s),
            "depth_ratio": self.depth(m) / m.depth_avg if m.depth_avg else 1.0,
            "spread_ratio": m.spread / m.spread_avg if m.spread_avg else 1.0,
            "flow_imbalance": m.horizons[0].imbalance(),
        }

    def _move(self, m: Market, to: State, ts: int, **extra: float | None) -> Transition:
        evidence = self.evidence(m, ts)
        evidence.update({k: float(v) for k, v in extra.items() if v is not None})
        transition = Transition(m.exchange, m.symbol, m.state, to, ts, evidence)
        m.state = to
        if to == "normal":
            for h in m.horizons:
                h.reset(ts, m.price)
            m.lows.clear()
            m.lows.append((ts, m.price))
            m.sample_ns, m.sample_price = ts, m.price
        return transition


def _apply(side: dict[float, float], levels: list[tuple[float, float]], best: float, higher: bool) -> float:
    for price, amount in levels:
        if amount:
            side[price] = amount
            if not best or (price > best if higher else price < best):
                best = price
        elif side.pop(price, None) is not None and price == best:
            best = (max if higher else min)(side, default=0.0)  # the top level went: find the next (rare)
    return best
