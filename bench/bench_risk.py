"""Risk: pre-trade check latency, crash-detector cost per market-data message, crash detection latency.

Real data: the recorded Binance spot + USD-M session in tests/data/risk. No peer runs here: none
of the peers detects or hedges flash crashes, and their pre-trade checks are not callable alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.context import BenchContext
from services.risk.crash import CrashDetector
from services.risk.replay import load_messages
from services.risk.simulate import SimConfig, simulate
from shared.pretrade import PreTradeGuard
from shared.schemas import BookUpdate, OrderIntent
from shared.sections.risk import Limits, RiskSettings

DATA = Path(__file__).parents[1] / "tests" / "data" / "risk" / "binance_btcusdt_20240808-09.jsonl.gz"
N_CHECKS = 200_000


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    a = np.asarray(samples_ns, dtype=np.float64) / 1_000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def pretrade() -> tuple[float, float]:
    """Every rule evaluated (the orders pass), on a guard holding several venues and assets."""
    limits = Limits(
        orders_per_s=1e9,
        order_burst=10**9,
        max_order_notional=1e9,
        max_position_notional=1e12,
        max_gross_exposure=1e12,
        max_net_exposure=1e12,
        max_open_orders=10**6,
    )
    guard = PreTradeGuard(RiskSettings(limits=limits), now_ns=time.time_ns())
    for venue in ("binance", "kraken", "okx"):
        for asset, price in (("BTC", 60_000.0), ("ETH", 3_000.0), ("SOL", 150.0), ("XRP", 0.5)):
            guard.set_mid(venue, f"{asset}/USDT", price)
            guard.set_position(venue, asset, 1.0)
            guard.set_free(venue, asset, 1e6)
        guard.set_free(venue, "USDT", 1e12)
    intents = [
        OrderIntent(
            f"c{i}",
            ("binance", "kraken", "okx")[i % 3],
            "BTC/USDT",
            "buy" if i % 2 else "sell",
            "limit" if i % 4 else "market",
            0.01,
            0,
            price=60_000.0 if i % 4 else None,
        )
        for i in range(1_000)
    ]
    samples = []
    clock = time.perf_counter_ns
    check = guard.check
    for i in range(N_CHECKS):
        intent = intents[i % 1_000]
        t0 = clock()
        reason = check(intent, t0)
        samples.append(clock() - t0)
        assert reason is None, reason
    return _percentiles(samples)


def detector() -> tuple[float, float, int]:
    messages = load_messages(DATA)
    d = CrashDetector(RiskSettings().crash)
    samples = []
    clock = time.perf_counter_ns
    for msg in messages:
        t0 = clock()
        if isinstance(msg, BookUpdate):
            d.on_book(msg)
        else:
            d.on_trade(msg)
        samples.append(clock() - t0)
    p50, p99 = _percentiles(samples)
    return p50, p99, len(messages)


def run(ctx: BenchContext) -> dict[str, float | int | str]:
    p50, p99 = pretrade()
    d50, d99, n = detector()
    hedged = simulate(DATA, RiskSettings(), SimConfig(crash_depth=0.3, fall_s=5.0, recover_s=60.0))
    naked = simulate(DATA, RiskSettings(), SimConfig(crash_depth=0.3, fall_s=5.0, recover_s=60.0, hedge=False))
    calm = simulate(DATA, RiskSettings(), SimConfig(crash_depth=0.0))
    return {
        "pretrade_check_p50_us": round(p50, 3),
        "pretrade_check_p99_us": round(p99, 3),
        "crash_detector_p50_us": round(d50, 3),
        "crash_detector_p99_us": round(d99, 3),
        "crash_detector_messages": n,
        "crash_detection_latency_ms": round(hedged["detection_latency_ms"], 1),
        "crash_max_drawdown_hedged": round(hedged["max_drawdown"], 5),
        "crash_max_drawdown_unhedged": round(naked["max_drawdown"], 5),
        "crash_liquidations_hedged": hedged["liquidations"],
        "crash_false_alarms_calm": calm["false_alarms"],
        "crash_scenario": "binance BTC/USDT 2024-08-08/09, -30% in 5 s, recovery over 60 s, 100k half in BTC",
    }
