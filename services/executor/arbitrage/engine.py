"""Incremental cycle detection: on a top-of-book change, touch only the cycles through that market.

Every directed cycle keeps the sum of its edges' log-rates (fees included); a cycle is profitable
at the top of the book when that sum is above ``log(1 + min_net_return)``. A price change on one
edge adds the same delta to every cycle using that edge, so an update costs one gather-add-scatter
over those cycles (numpy when there are many, a plain loop when there are few: numpy's fixed cost
per call is ~1 µs). Candidates above the threshold (minus a small tolerance for the rounding of
incremental sums) are then confirmed exactly from the prices themselves (`exact_returns`).
When an edge appears or disappears (a book side empties) its cycles' sums are recomputed from the
edges, so ``-inf`` never meets ``+inf``; `resync` recomputes every sum (call it now and then to
wipe accumulated rounding).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from services.executor.arbitrage.cycles import SELL, CycleSet

# Below this many cycles per edge a Python loop beats numpy's per-call overhead (measured).
SMALL_EDGE = 24
# The ufunc reduction itself: ndarray.max() goes through numpy's Python-level wrapper first (~0.2 µs).
_max = np.maximum.reduce
# Incremental sums drift by ~1e-15 per update; candidates this close to the threshold are checked exactly.
TOLERANCE = 1e-9


class CycleEngine:
    """Top-of-book state of every market and the log-return of every cycle, updated incrementally."""

    def __init__(self, cycles: CycleSet, min_net_return: float = 0.0) -> None:
        self.cycles = cycles
        self.min_net_return = min_net_return
        n_markets = len(cycles.markets)
        self._fee_lr = [math.log1p(-m.taker_fee) for m in cycles.markets]
        self._keep = [1.0 - m.taker_fee for m in cycles.markets]
        # (market, side, 1 - fee) of each leg of the cycles confirmed so far: candidates recur (a profitable
        # cycle stays one while its books tick), and reading a cycle's row from numpy costs ~2 µs
        self._legs: dict[int, tuple[tuple[int, int, float], ...]] = {}
        self.bid = [0.0] * n_markets
        self.ask = [0.0] * n_markets
        # the pad edge (last) is always 0 so 3-cycles sum over 4 slots like 4-cycles
        self._edge_lr = np.full(2 * n_markets + 1, -np.inf)
        self._edge_lr[-1] = 0.0
        self._edge_py = [-math.inf] * (2 * n_markets)
        self._sums = np.full(len(cycles), -np.inf)
        self._sums_view = self._sums.data  # plain memoryviews: fast scalar access from Python
        self._edge_view: Any = self._edge_lr.data  # typeshed's memoryview takes ints only
        self._threshold = math.log1p(min_net_return) - TOLERANCE
        # intp ids: numpy indexes with intp, so int32 ids would be converted on every call
        self._by_edge = [ids.astype(np.intp) for ids in cycles.by_edge]
        self._small = [tuple(ids.tolist()) if len(ids) < SMALL_EDGE else None for ids in cycles.by_edge]
        widest = max((len(ids) for ids in cycles.by_edge), default=0)
        self._scratch = np.empty(2 * widest)
        self._plans = [self._plan(m) for m in range(n_markets)]

    def update(self, market: int, bid: float, ask: float) -> list[int]:
        """Set a market's best bid and ask (0 = side empty); return the candidate cycle ids it made."""
        candidates: list[int] = []
        fee_lr = self._fee_lr[market]
        sell_edge = 2 * market
        edge_py = self._edge_py
        if (
            bid != self.bid[market]
            and ask != self.ask[market]
            and bid > 0
            and ask > 0
            and edge_py[sell_edge] != -math.inf
            and edge_py[sell_edge + 1] != -math.inf
        ):
            self.bid[market] = bid
            self.ask[market] = ask
            self._move_both(market, math.log(bid) + fee_lr, fee_lr - math.log(ask), candidates)
            return candidates
        if bid != self.bid[market]:
            self.bid[market] = bid
            self._set_edge(sell_edge, math.log(bid) + fee_lr if bid > 0 else -math.inf, candidates)
        if ask != self.ask[market]:
            self.ask[market] = ask
            self._set_edge(sell_edge + 1, fee_lr - math.log(ask) if ask > 0 else -math.inf, candidates)
        return candidates

    def _plan(self, market: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """A market's sell-edge cycles then its buy-edge cycles (disjoint: a simple cycle uses a market
        once) and views of the scratch buffer over all, the first and the second part; None: both small."""
        sells, buys = self._by_edge[2 * market], self._by_edge[2 * market + 1]
        if len(sells) < SMALL_EDGE and len(buys) < SMALL_EDGE:
            return None
        buf = self._scratch[: len(sells) + len(buys)]
        return np.concatenate((sells, buys)), buf, buf[: len(sells)], buf[len(sells) :]

    def load(self, market: int, bid: float, ask: float) -> None:
        """Set a market's top of book without re-evaluating; call `resync` after loading a snapshot."""
        self.bid[market] = bid
        self.ask[market] = ask
        self._edge_py[2 * market] = self._sell_lr(market, bid)
        self._edge_py[2 * market + 1] = self._buy_lr(market, ask)

    def _sell_lr(self, market: int, bid: float) -> float:
        return math.log(bid) + self._fee_lr[market] if bid > 0 else -math.inf

    def _buy_lr(self, market: int, ask: float) -> float:
        return self._fee_lr[market] - math.log(ask) if ask > 0 else -math.inf

    def _move_both(self, market: int, sell: float, buy: float, candidates: list[int]) -> None:
        """Both sides moved and neither is or was empty: both edges' deltas in one gather and one scatter."""
        edge_py, edge_view = self._edge_py, self._edge_view
        sell_edge = 2 * market
        sell_delta = sell - edge_py[sell_edge]
        buy_delta = buy - edge_py[sell_edge + 1]
        edge_py[sell_edge] = edge_view[sell_edge] = sell
        edge_py[sell_edge + 1] = edge_view[sell_edge + 1] = buy
        threshold = self._threshold
        plan = self._plans[market]
        if plan is None:
            view = self._sums_view
            for c in self._small[sell_edge] or ():
                s = view[c] + sell_delta
                view[c] = s
                if s > threshold:
                    candidates.append(c)
            for c in self._small[sell_edge + 1] or ():
                s = view[c] + buy_delta
                view[c] = s
                if s > threshold:
                    candidates.append(c)
            return
        ids, buf, sells, buys = plan
        self._sums.take(ids, out=buf)
        sells += sell_delta
        buys += buy_delta
        self._sums[ids] = buf
        if _max(buf) > threshold:
            candidates.extend(ids[buf > threshold].tolist())

    def _set_edge(self, edge: int, value: float, candidates: list[int]) -> None:
        old = self._edge_py[edge]
        self._edge_py[edge] = value
        self._edge_lr[edge] = value
        threshold = self._threshold
        if old == -math.inf or value == -math.inf:
            ids = self._by_edge[edge]
            sums = self._edge_lr[self.cycles.edges[ids]].sum(axis=1)
            self._sums[ids] = sums
            candidates.extend(ids[sums > threshold].tolist())
            return
        delta = value - old
        small = self._small[edge]
        if small is not None:
            view = self._sums_view
            for c in small:
                s = view[c] + delta
                view[c] = s
                if s > threshold:
                    candidates.append(c)
            return
        ids = self._by_edge[edge]
        buf = self._scratch[: len(ids)]
        self._sums.take(ids, out=buf)
        buf += delta
        self._sums[ids] = buf
        if _max(buf) > threshold:
            candidates.extend(ids[buf > threshold].tolist())

    def resync(self) -> list[int]:
        """Recompute every cycle's sum from the edges; return all candidate cycle ids."""
        self._edge_lr[:-1] = self._edge_py
        self._sums[:] = self._edge_lr[self.cycles.edges].sum(axis=1)
        return np.flatnonzero(self._sums > self._threshold).tolist()

    def best(self) -> tuple[int, float] | None:
        """The cycle with the highest net return at the top of the book and that return (after a resync)."""
        if not len(self._sums):
            return None
        cycle = int(np.argmax(self._sums))
        return (cycle, self.exact_returns(cycle)[1]) if self._sums[cycle] > -np.inf else None

    def exact_returns(self, cycle: int) -> tuple[float, float]:
        """``(gross, net)`` return of one pass at the top of the book, from the prices themselves."""
        legs = self._legs.get(cycle)
        if legs is None:
            legs = self._legs[cycle] = tuple((m, side, self._keep[m]) for m, side in self.cycles.legs(cycle))
        bid, ask = self.bid, self.ask
        gross = 1.0
        net = 1.0
        for m, side, keep in legs:
            rate = bid[m] if side == SELL else (1.0 / ask[m] if ask[m] > 0 else 0.0)
            gross *= rate
            net *= rate * keep
        return gross - 1.0, net - 1.0

    def confirm(self, candidates: list[int]) -> list[tuple[int, float, float]]:
        """Keep the candidates whose exact net return beats ``min_net_return``: ``(cycle, gross, net)``."""
        confirmed = []
        for cycle in candidates:
            gross, net = self.exact_returns(cycle)
            if net > self.min_net_return:
                confirmed.append((cycle, gross, net))
        return confirmed
