"""The currency graph of one venue and every simple 3- and 4-cycle through it, enumerated once.

Each ``BASE/QUOTE`` market gives two directed edges: SELL (base → quote, at the bid) and BUY
(quote → base, at the ask). Edge ``e`` of market ``m`` is ``2*m + side``. A directed cycle is
stored once (not once per rotation), rotated to begin at its preferred start asset, as a row of
edge ids padded with ``pad_edge`` (an edge whose log-rate is always 0) for 3-cycles.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from services.executor.arbitrage.markets import Market

SELL = 0
BUY = 1
SIDE_NAMES = ("sell", "buy")


@dataclass(frozen=True)
class CycleSet:
    """Directed cycles as arrays, plus the index from each edge to the cycles that use it."""

    markets: tuple[Market, ...]
    edges: np.ndarray  # (n_cycles, 4) int32 edge ids, padded with pad_edge
    lengths: np.ndarray  # (n_cycles,) int8: 3 or 4
    by_edge: tuple[np.ndarray, ...]  # edge id -> int32 cycle ids (sorted)

    @property
    def pad_edge(self) -> int:
        return 2 * len(self.markets)

    def __len__(self) -> int:
        return len(self.edges)

    def legs(self, cycle: int) -> list[tuple[int, int]]:
        """``(market index, side)`` of each leg, in trading order."""
        return [(e >> 1, e & 1) for e in self.edges[cycle].tolist()[: self.lengths[cycle]]]

    def assets(self, cycle: int) -> list[str]:
        """The assets visited, start asset first and last (``["USDT", "BTC", "ETH", "USDT"]``)."""
        path = []
        for m, side in self.legs(cycle):
            market = self.markets[m]
            path.append(market.base if side == SELL else market.quote)
        return [*path, path[0]]


def start_ranking(markets: Sequence[Market], start_assets: Sequence[str] | None) -> dict[str, int]:
    """Rank assets as cycle starts (lower is preferred); only ranked assets may start a cycle.

    Given start assets, their order is the preference. Otherwise every asset may start and the
    best-connected ones (the venue's hubs: USDT, BTC, ...) come first, ties by name.
    """
    if start_assets:
        return {asset: i for i, asset in enumerate(start_assets)}
    degree: dict[str, int] = defaultdict(int)
    for market in markets:
        degree[market.base] += 1
        degree[market.quote] += 1
    ordered = sorted(degree, key=lambda a: (-degree[a], a))
    return {asset: i for i, asset in enumerate(ordered)}


def enumerate_cycles(
    markets: Sequence[Market], max_len: int = 4, start_assets: Sequence[str] | None = None
) -> CycleSet:
    """Enumerate every simple directed cycle of length 3..``max_len`` that contains a start asset."""
    if max_len not in (3, 4):
        raise ValueError(f"max_len must be 3 or 4, got {max_len}")
    rank = start_ranking(markets, start_assets)
    names = sorted({m.base for m in markets} | {m.quote for m in markets})
    index = {name: i for i, name in enumerate(names)}
    # pair (lower asset, higher asset) -> markets between them (almost always exactly one)
    pair_markets: dict[tuple[int, int], list[int]] = defaultdict(list)
    neighbours: list[set[int]] = [set() for _ in names]
    for m, market in enumerate(markets):
        a, b = index[market.base], index[market.quote]
        if a == b:
            continue
        pair_markets[(min(a, b), max(a, b))].append(m)
        neighbours[a].add(b)
        neighbours[b].add(a)
    ranks = [rank.get(name, -1) for name in names]

    rows: list[tuple[int, ...]] = []
    for ring in _undirected_rings(neighbours, max_len):
        if all(ranks[a] < 0 for a in ring):
            continue
        hops = [pair_markets[_pair(ring[i], ring[(i + 1) % len(ring)])] for i in range(len(ring))]
        for chosen in itertools.product(*hops):
            for forward in (True, False):
                rows.append(_directed_row(ring, chosen, forward, ranks, markets, index))

    pad = 2 * len(markets)
    edges = np.full((len(rows), 4), pad, dtype=np.int32)
    lengths = np.zeros(len(rows), dtype=np.int8)
    for i, row in enumerate(rows):
        edges[i, : len(row)] = row
        lengths[i] = len(row)
    return CycleSet(tuple(markets), edges, lengths, _index_by_edge(edges, pad))


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def _undirected_rings(neighbours: list[set[int]], max_len: int) -> Iterator[tuple[int, ...]]:
    """Each undirected simple cycle once, as assets in ring order with its smallest asset first."""
    for a, around in enumerate(neighbours):
        higher = sorted(b for b in around if b > a)
        for i, b in enumerate(higher):
            for c in higher[i + 1 :]:
                if c in neighbours[b]:
                    yield (a, b, c)
        if max_len < 4:
            continue
        # 4-rings a-b-c-d: group the 2-paths a-b-c by their far end c; any two middles close a ring.
        middles: dict[int, list[int]] = defaultdict(list)
        for b in higher:
            for c in neighbours[b]:
                if c > a:
                    middles[c].append(b)
        for c, bs in middles.items():
            for b, d in itertools.combinations(bs, 2):
                yield (a, b, c, d)


def _directed_row(
    ring: tuple[int, ...],
    chosen: tuple[int, ...],
    forward: bool,
    ranks: list[int],
    markets: Sequence[Market],
    index: dict[str, int],
) -> tuple[int, ...]:
    n = len(ring)
    # hop i goes ring[i] -> ring[i+1] over chosen[i]; reversed, hop i goes ring[i+1] -> ring[i].
    hops = [(ring[i], chosen[i]) for i in range(n)]
    if not forward:
        hops = [(ring[(i + 1) % n], chosen[i]) for i in reversed(range(n))]
    eligible = [k for k in range(n) if ranks[hops[k][0]] >= 0]
    first = min(eligible, key=lambda k: ranks[hops[k][0]])
    row = []
    for k in range(n):
        source, m = hops[(first + k) % n]
        side = SELL if index[markets[m].base] == source else BUY
        row.append(2 * m + side)
    return tuple(row)


def _index_by_edge(edges: np.ndarray, pad: int) -> tuple[np.ndarray, ...]:
    flat = edges.ravel()
    cycle_ids = np.repeat(np.arange(len(edges), dtype=np.int32), edges.shape[1])
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(pad + 2))
    sorted_cycles = cycle_ids[order]
    return tuple(sorted_cycles[bounds[e] : bounds[e + 1]].copy() for e in range(pad))
