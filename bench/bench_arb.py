"""Arbitrage cycle engine on the real Binance spot market list (1,222 tradable spot markets,
~262k directed 3- and 4-cycles), against a networkx simple-cycle scan of the same graph.

Books are generated (seeded): a random price per asset, each market's mid off by a little noise,
so a few cycles are profitable after the 0.1% taker fee. An update moves both sides of one
market's top of book, the costliest kind; markets are drawn uniformly among those in any cycle.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from services.executor.arbitrage.books import Book
from services.executor.arbitrage.cycles import enumerate_cycles
from services.executor.arbitrage.engine import CycleEngine
from services.executor.arbitrage.markets import Market, load_markets
from services.executor.arbitrage.scan import scan

MARKETS = Path(__file__).parent.parent / "tests" / "data" / "arbitrage" / "binance_spot_exchangeInfo_2021-10-12.json.gz"
FEE = 0.001
UPDATES = 50_000
NOISE = 0.0009  # mid off the asset-price ratio: a handful of cycles beat 3-4 taker fees
HUBS = 20


def _books(markets: list[Market], rng: random.Random) -> dict[str, Book]:
    assets = sorted({a for m in markets for a in (m.base, m.quote)})
    price = {a: math.exp(rng.uniform(-6, 8)) for a in assets}
    books = {}
    for m in markets:
        mid = price[m.base] / price[m.quote] * math.exp(rng.gauss(0, NOISE))
        half = rng.uniform(0.0002, 0.001)
        books[m.symbol] = Book(((mid * (1 - half), 1e6),), ((mid * (1 + half), 1e6),))
    return books


def _update_latencies(engine: CycleEngine, markets: list[int], books: list[Book], rng: random.Random) -> np.ndarray:
    moves = []
    for _ in range(UPDATES):
        m = rng.choice(markets)
        mid = (books[m].best_bid + books[m].best_ask) / 2 * math.exp(rng.gauss(0, 0.0005))
        moves.append((m, mid * 0.9995, mid * 1.0005))
    clock = time.perf_counter_ns
    took = np.empty(len(moves))
    for i, (m, bid, ask) in enumerate(moves):
        started = clock()
        candidates = engine.update(m, bid, ask)
        if candidates:
            engine.confirm(candidates)
        took[i] = clock() - started
    return took / 1000.0


def _networkx_scan(markets: list[Market], books: dict[str, Book]) -> int:
    """The peers' way: a DiGraph of rates, nx.simple_cycles(length_bound=4), price every cycle."""
    graph = nx.DiGraph()
    for m in markets:
        book = books[m.symbol]
        graph.add_edge(m.base, m.quote, rate=book.best_bid * (1 - FEE))
        graph.add_edge(m.quote, m.base, rate=(1 - FEE) / book.best_ask)
    profitable = 0
    for cycle in nx.simple_cycles(graph, length_bound=4):
        if len(cycle) < 3:
            continue
        product = 1.0
        for i, asset in enumerate(cycle):
            product *= graph[asset][cycle[(i + 1) % len(cycle)]]["rate"]
        profitable += product > 1.0
    return profitable


def run(ctx: Any) -> dict[str, float | int | str]:
    rng = random.Random(42)
    markets = load_markets(MARKETS, FEE)
    books = _books(markets, rng)

    started = time.perf_counter()
    found = scan(markets, books, max_len=4)
    full_scan_s = time.perf_counter() - started

    started = time.perf_counter()
    cycles = enumerate_cycles(markets, 4)
    enumerate_s = time.perf_counter() - started
    engine = CycleEngine(cycles)
    by_index = [books[m.symbol] for m in markets]
    for m, book in enumerate(by_index):
        engine.load(m, book.best_bid, book.best_ask)
    top_profitable = len(engine.confirm(engine.resync()))
    touched = [len(cycles.by_edge[2 * m]) + len(cycles.by_edge[2 * m + 1]) for m in range(len(markets))]
    in_cycles = [m for m, n in enumerate(touched) if n > 0]
    hubs = sorted(in_cycles, key=lambda m: -touched[m])[:HUBS]
    all_us = _update_latencies(engine, in_cycles, by_index, rng)
    hub_us = _update_latencies(engine, hubs, by_index, rng)

    started = time.perf_counter()
    nx_profitable = _networkx_scan(markets, books)
    networkx_s = time.perf_counter() - started
    return {
        "arb_update_p50_us": round(float(np.percentile(all_us, 50)), 2),
        "arb_update_p99_us": round(float(np.percentile(all_us, 99)), 2),
        "arb_update_hub_p50_us": round(float(np.percentile(hub_us, 50)), 2),
        "arb_update_hub_p99_us": round(float(np.percentile(hub_us, 99)), 2),
        "arb_update_cycles_median": int(np.median([touched[m] for m in in_cycles])),
        "arb_markets": len(markets),
        "arb_cycles": len(cycles),
        "arb_enumerate_s": round(enumerate_s, 3),
        "arb_full_scan_s": round(full_scan_s, 3),
        "arb_full_scan_profitable_top": top_profitable,
        "arb_full_scan_profitable_sized": len(found),
        "arb_networkx_scan_s": round(networkx_s, 3),
        "arb_networkx_profitable": nx_profitable,
        "arb_networkx_ratio": round(networkx_s / full_scan_s, 1),
    }
