"""The capture `tradewind up --mode synth` serves: a generated market in Binance's wire format.

The price path is ``shared.synth_market`` (mean reversion around a falling mean). Here it becomes
what the Binance connector reads from the venue: an exchangeInfo listing SYNUSDT, a REST depth
snapshot, then every quarter step a ``synusdt@trade`` frame at the step's price and a
``synusdt@depth@100ms`` diff moving a five-level book around it. Exchange times start when it is
generated, evenly spaced, so bars timed by them hold one step each. The session is built in memory
from the seed when ingest starts (no file) and served by the replay exchange without looping: it
holds ``minutes`` of market (``ingest.synth``), after which the feed ends (a reconnect would replay it
from its start: the trainer refuses those bars as a loop).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from services.ingest.records import Record, Session
from shared.synth_market import EXCHANGE, SYMBOL, VENUE_SYMBOL, SynthParams, prices

TICK = 0.0001
LEVELS = 5
HALF_SPREAD = 0.0001  # of the price: 1 bp, what the trainer's cost model charges; levels are this far apart
LEVEL_QTY = 50.0  # base per level: deep enough for the paper strategies' orders (1 base = 1,000 USDT at the start)
TRADE_QTY = 5_000.0  # base per trade (median): bars hold millions of notional, so the cost model's impact is small
URL = f"https://{EXCHANGE}.invalid"
FIRST_UPDATE = 1_000


def exchange_info() -> str:
    """The market list the synth venue answers: one spot market, SYNUSDT."""
    base, quote = SYMBOL.split("/")
    market = {"symbol": VENUE_SYMBOL, "status": "TRADING", "baseAsset": base, "quoteAsset": quote}
    return _compact({"timezone": "UTC", "serverTime": 0, "symbols": [market]})


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))  # as Binance sends it (captures are matched on this)


def book_ticks(price: float) -> tuple[list[int], list[int]]:
    """Bid and ask levels (in ticks, best first) of the book around `price`."""
    mid, gap = round(price / TICK), max(1, round(price * HALF_SPREAD / TICK))
    return [mid - gap * (i + 1) for i in range(LEVELS)], [mid + gap * (i + 1) for i in range(LEVELS)]


def _levels(ticks: list[int], qty: float) -> list[list[str]]:
    return [[f"{t * TICK:.4f}", f"{qty:.8f}"] for t in ticks]


def synth_session(params: SynthParams, minutes: float, start_ns: int | None = None) -> Session:
    """`minutes` of the generated market as one recorded Binance session starting at `start_ns` (now)."""
    steps = max(2, int(minutes * 60 / params.step_s))
    path = prices(steps, params)
    rng = np.random.default_rng(params.seed + 1)
    quantities = rng.lognormal(np.log(TRADE_QTY), 0.3, 2 * steps)
    makers = rng.random(2 * steps) < 0.5
    t0 = time.time_ns() if start_ns is None else start_ns
    quarter = int(params.step_s * 1e9 / 2)
    stream = VENUE_SYMBOL.lower()
    bids, asks = book_ticks(float(path[0]))
    snapshot = {"lastUpdateId": FIRST_UPDATE, "bids": _levels(bids, LEVEL_QTY), "asks": _levels(asks, LEVEL_QTY)}
    records = [
        Record("rest", exchange_info(), t0, f"{URL}/api/v3/exchangeInfo"),
        Record("rest", _compact(snapshot), t0, f"{URL}/api/v3/depth?symbol={VENUE_SYMBOL}&limit=1000"),
    ]
    update = FIRST_UPDATE
    for j in range(2 * steps):
        ts = t0 + (j + 1) * quarter
        ms = ts // 1_000_000
        price = float(path[j // 2])
        trade = {"e": "trade", "E": ms, "s": VENUE_SYMBOL, "t": j + 1, "p": f"{round(price / TICK) * TICK:.4f}",
                 "q": f"{quantities[j]:.8f}", "T": ms, "m": bool(makers[j]), "M": True}  # fmt: skip
        records.append(Record("frame", _compact({"stream": f"{stream}@trade", "data": trade}), ts))
        new_bids, new_asks = book_ticks(price)
        gone_bids = sorted(set(bids) - set(new_bids))
        gone_asks = sorted(set(asks) - set(new_asks))
        depth = {"e": "depthUpdate", "E": ms, "s": VENUE_SYMBOL, "U": update + 1, "u": update + 1,
                 "b": _levels(gone_bids, 0.0) + _levels(new_bids, LEVEL_QTY),
                 "a": _levels(gone_asks, 0.0) + _levels(new_asks, LEVEL_QTY)}  # fmt: skip
        update += 1
        bids, asks = new_bids, new_asks
        records.append(Record("frame", _compact({"stream": f"{stream}@depth@100ms", "data": depth}), ts))
    return Session(EXCHANGE, Path(f"<generated {EXCHANGE} market, seed {params.seed}>"), records)
