"""A brute-force cycle oracle written independently of the engine: walk every directed path of
up to 4 distinct assets from each start asset, keep the closed ones, price them directly."""

from __future__ import annotations

from collections import defaultdict

from services.executor.arbitrage.markets import Market

Key = tuple[tuple[str, str], ...]


def rotation_free(legs: list[tuple[str, str]]) -> Key:
    return min(tuple(legs[i:] + legs[:i]) for i in range(len(legs)))


def hub_order(markets: list[Market]) -> list[str]:
    count: dict[str, int] = defaultdict(int)
    for m in markets:
        count[m.base] += 1
        count[m.quote] += 1
    return sorted(count, key=lambda a: (-count[a], a))


def oracle_cycles(markets: list[Market], max_len: int, starts: list[str]) -> dict[Key, list[tuple[Market, str]]]:
    """Every directed simple cycle of 3..max_len legs through a start asset, as legs from the
    most preferred start asset it contains."""
    out: dict[str, list[tuple[str, Market, str]]] = defaultdict(list)
    for m in markets:
        out[m.base].append((m.quote, m, "sell"))
        out[m.quote].append((m.base, m, "buy"))
    found: dict[Key, list[tuple[Market, str]]] = {}

    def walk(start: str, visited: list[str], legs: list[tuple[Market, str]]) -> None:
        for to, market, side in out[visited[-1]]:
            path = [*legs, (market, side)]
            if to == start and len(path) >= 3:
                key = rotation_free([(m.symbol, s) for m, s in path])
                found.setdefault(key, path)
            elif to not in visited and len(path) < max_len:
                walk(start, [*visited, to], path)

    for start in starts:
        walk(start, [start], [])
    return found


def oracle_profitable(
    cycles: dict[Key, list[tuple[Market, str]]], tops: dict[str, tuple[float, float]]
) -> dict[Key, tuple[float, float]]:
    """``key -> (gross, net)`` of the cycles whose net return at the top of the book is > 0."""
    result = {}
    for key, legs in cycles.items():
        gross = net = 1.0
        for market, side in legs:
            bid, ask = tops.get(market.symbol, (0.0, 0.0))
            rate = bid if side == "sell" else (1 / ask if ask > 0 else 0.0)
            gross *= rate
            net *= rate * (1 - market.taker_fee)
        if net > 1.0:
            result[key] = (gross - 1, net - 1)
    return result
