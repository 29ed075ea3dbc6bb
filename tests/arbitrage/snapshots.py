"""Real market lists and ticker snapshots turned into tops of book and books for the arbitrage tests."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from services.executor.arbitrage.books import Book
from services.executor.arbitrage.markets import Market

DATA = Path(__file__).parent.parent / "data" / "arbitrage"
POLONIEX_TICKERS = ("poloniex_returnTicker_2021-04-17.json", "poloniex_returnTicker_2021-05-02.json")
BINANCE_MARKETS = DATA / "binance_spot_exchangeInfo_2021-10-12.json.gz"
DEEP = 1e9  # tickers have no depth: one deep level, so sizing never hides a top-of-book cycle


def poloniex_tops(name: str) -> dict[str, tuple[float, float]]:
    """``BASE/QUOTE -> (best bid, best ask)`` of every unfrozen market in a returnTicker snapshot."""
    raw = json.loads((DATA / name).read_text())
    tops = {}
    for key, ticker in raw.items():
        quote, base = key.split("_")  # Poloniex keys are QUOTE_BASE
        if ticker["isFrozen"] == "0":
            tops[f"{base}/{quote}"] = (float(ticker["highestBid"]), float(ticker["lowestAsk"]))
    return tops


def one_level_books(tops: dict[str, tuple[float, float]]) -> dict[str, Book]:
    return {
        symbol: Book(((bid, DEEP),) if bid > 0 else (), ((ask, DEEP),) if ask > 0 else ())
        for symbol, (bid, ask) in tops.items()
    }


def binance_tops(markets: list[Market], seed: int, noise: float = 0.002) -> dict[str, tuple[float, float]]:
    """Generated tops for the real Binance market list: assets priced in USDT from Poloniex's
    tickers where the asset trades there (random otherwise), each market's mid off by ``noise``."""
    rng = random.Random(seed)
    usdt = {
        s.split("/")[0]: (b + a) / 2
        for s, (b, a) in poloniex_tops(POLONIEX_TICKERS[0]).items()
        if s.endswith("/USDT") and b > 0 and a > 0
    }
    usdt["USDT"] = 1.0
    assets = sorted({a for m in markets for a in (m.base, m.quote)})
    price = {a: usdt.get(a) or math.exp(rng.uniform(-6, 8)) for a in assets}
    tops = {}
    for m in markets:
        mid = price[m.base] / price[m.quote] * math.exp(rng.gauss(0, noise))
        half_spread = rng.uniform(0.0001, 0.001)
        tops[m.symbol] = (mid * (1 - half_spread), mid * (1 + half_spread))
    return tops
