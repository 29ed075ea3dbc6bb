"""Arbitrage cycle engine on the real Binance spot market list (1,222 tradable spot markets,
~262k directed 3- and 4-cycles), against a networkx simple-cycle scan of the same graph.

Books are generated (seeded): a random price per asset, each market's mid off by a little noise,
so a few cycles are profitable after the 0.1% taker fee. An update moves both sides of one
market's top of book, the costliest kind; markets are drawn uniformly among those in any cycle.

Cross-venue graph (``arb_update_xvenue_*``): the cycle engine has no transfer edge, and the
cross-venue strategy does not use it (it compares one symbol's tops pairwise across venues), so
the graph is built from what exists: every venue of ``arbitrage.venues`` (its default, 8 spot
venues) with the market list its ingest adapter ships (``shipped_markets()``, listed markets
whatever their trading status), assets named per venue (``kraken:BTC``), plus one pseudo-market
``venue_a:X/venue_b:X`` per asset and pair of venues listing it: a transfer both ways at rate 1
less a 5 bps stand-in (withdrawal fees are fixed amounts, not rates), whose books never move.
Updates move real markets only. Graph growth (``arb_update_p50_us_venues_N``): the same
construction on the first 1, 3 and 8 of those venues (binance; + binance_us, coinbase; + kraken,
okx, bitstamp, bitfinex, gemini), so ``venues_8`` is the cross-venue graph itself. Ten adapters
exist, but bybit ships no market list and binance_futures lists perpetuals, not spot markets.
"""

from __future__ import annotations

import itertools
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
from services.ingest.venues import get
from shared.sections.arbitrage import ArbitrageSettings

MARKETS = Path(__file__).parent.parent / "tests" / "data" / "arbitrage" / "binance_spot_exchangeInfo_2021-10-12.json.gz"
FEE = 0.001
UPDATES = 50_000
NOISE = 0.0009  # mid off the asset-price ratio: a handful of cycles beat 3-4 taker fees
HUBS = 20
TRANSFER_FEE = 0.0005
SCALING_UPDATES = 20_000
SCALING_VENUES = (1, 3, 8)  # the first N of arbitrage.venues


def _books(markets: list[Market], rng: random.Random) -> dict[str, Book]:
    """One price per asset (``kraken:BTC`` and ``okx:BTC`` share BTC's), each mid off it by noise."""
    assets = sorted({_asset(a) for m in markets for a in (m.base, m.quote)})
    price = {a: math.exp(rng.uniform(-6, 8)) for a in assets}
    books = {}
    for m in markets:
        mid = price[_asset(m.base)] / price[_asset(m.quote)] * math.exp(rng.gauss(0, NOISE))
        half = rng.uniform(0.0002, 0.001)
        books[m.symbol] = Book(((mid * (1 - half), 1e6),), ((mid * (1 + half), 1e6),))
    return books


def _asset(name: str) -> str:
    return name.rpartition(":")[2]


def _venue_graph(venues: list[str]) -> tuple[list[Market], list[Market]]:
    """(the venues' shipped markets with per-venue asset names, transfer pseudo-markets between them)."""
    markets: list[Market] = []
    listed_on: dict[str, list[str]] = {}
    for venue in venues:
        for symbol in sorted(get(venue).shipped_markets().to_unified.values()):
            base, _, quote = symbol.partition("/")
            markets.append(Market(f"{venue}:{symbol}", f"{venue}:{base}", f"{venue}:{quote}", FEE))
            for asset in (base, quote):
                listed_on.setdefault(asset, [])
                if venue not in listed_on[asset]:
                    listed_on[asset].append(venue)
    transfers = [
        Market(f"{a}:{asset}/{b}:{asset}", f"{a}:{asset}", f"{b}:{asset}", TRANSFER_FEE)
        for asset in sorted(listed_on)
        for a, b in itertools.combinations(listed_on[asset], 2)
    ]
    return markets, transfers


def _venue_graph_run(venues: list[str], rng: random.Random) -> tuple[np.ndarray, int, int, int]:
    """Update latencies (µs) on the venues' graph; with its market, transfer and cycle counts."""
    markets, transfers = _venue_graph(venues)
    books = _books(markets, rng)
    books.update({t.symbol: Book(((1.0, 1e6),), ((1.0, 1e6),)) for t in transfers})
    graph = markets + transfers
    cycles = enumerate_cycles(graph, 4)
    engine = CycleEngine(cycles)
    by_index = [books[m.symbol] for m in graph]
    for m, book in enumerate(by_index):
        engine.load(m, book.best_bid, book.best_ask)
    engine.confirm(engine.resync())
    moved = [m for m in range(len(markets)) if len(cycles.by_edge[2 * m]) + len(cycles.by_edge[2 * m + 1])]
    took = _update_latencies(engine, moved, by_index, rng, SCALING_UPDATES)
    return took, len(markets), len(transfers), len(cycles)


def _scaling(rng: random.Random) -> dict[str, float | int | str]:
    venues = ArbitrageSettings().venues
    out: dict[str, float | int | str] = {}
    for n in SCALING_VENUES:
        took, n_markets, n_transfers, n_cycles = _venue_graph_run(venues[:n], rng)
        out[f"arb_update_p50_us_venues_{n}"] = round(float(np.percentile(took, 50)), 2)
        out[f"arb_markets_venues_{n}"] = n_markets
        out[f"arb_cycles_venues_{n}"] = n_cycles
        if n == len(venues):
            out["arb_update_xvenue_p50_us"] = out[f"arb_update_p50_us_venues_{n}"]
            out["arb_update_xvenue_p99_us"] = round(float(np.percentile(took, 99)), 2)
            out["arb_xvenue_markets"] = n_markets
            out["arb_xvenue_transfer_edges"] = n_transfers
            out["arb_xvenue_cycles"] = n_cycles
            out["arb_xvenue_venues"] = n
    out["arb_venues_note"] = (
        f"venues_N: the first N of arbitrage.venues ({', '.join(venues)}) with their shipped market lists, "
        "assets per venue, transfer pseudo-markets between venues; the largest is the xvenue graph"
    )
    return out


def _update_latencies(
    engine: CycleEngine, markets: list[int], books: list[Book], rng: random.Random, updates: int = UPDATES
) -> np.ndarray:
    moves = []
    for _ in range(updates):
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
        **_scaling(rng),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(None), indent=2))
