"""Flash crashes across shapes: the detection grid and the false-alarm rate on real recorded data.

Grid: crash depth {5, 8, 15, 30}% x fall {5, 30, 120} s x scope {one venue, every venue}, injected
120 s into the recorded Binance spot + USD-M session (tests/data/risk), recovering over 120 s;
each cell is simulated hedged and unhedged (100k, half in BTC, margin on the crashing venue).
False alarms: the detector alone over every recorded session in tests/data with nothing injected,
counted per venue-day of data. `python -m bench.bench_crash` prints the grid as the README's table.
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from bench.context import BenchContext
from services.risk.crash import CrashDetector
from services.risk.replay import NS, CrashProfile, MarketMessage, inject, load_messages
from services.risk.simulate import Scope, SimConfig, run_messages
from services.risk.sources import load_capture
from shared.schemas import BookUpdate, Trade
from shared.sections.risk import RiskSettings

DATA = Path(__file__).parents[1] / "tests" / "data"
GRID_DATA = DATA / "risk" / "binance_btcusdt_20240808-09.jsonl.gz"
DEPTHS = (0.05, 0.08, 0.15, 0.30)
FALLS_S = (5.0, 30.0, 120.0)
SCOPES: tuple[Scope, ...] = ("venue", "market")
RECOVER_S = 120.0
CRASH_AT_S = 120.0


@dataclass(frozen=True)
class Cell:
    depth: float
    fall_s: float
    scope: Scope
    detected: bool
    latency_s: float | None
    drawdown_hedged: float
    drawdown_unhedged: float
    pnl_hedged: float
    pnl_unhedged: float
    costs: float  # fees + interest of the hedged run
    liquidations: int
    false_alarms: int

    @property
    def targeted(self) -> bool:
        """The issue's target: every crash of at least 8% within 30 s."""
        return self.depth >= 0.08 and self.fall_s <= 30

    @property
    def hedge_ok(self) -> bool:
        return (
            self.detected
            and self.drawdown_hedged <= 0.5 * self.drawdown_unhedged
            and self.pnl_hedged >= self.pnl_unhedged - self.costs
            and self.liquidations == 0
        )


def grid(risk: RiskSettings, messages: list[MarketMessage] | None = None) -> list[Cell]:
    messages = messages if messages is not None else load_messages(GRID_DATA)
    cells = []
    for scope in SCOPES:
        for fall_s in FALLS_S:
            for depth in DEPTHS:
                runs = {
                    hedge: run_messages(
                        messages,
                        risk,
                        SimConfig(depth, fall_s, RECOVER_S, CRASH_AT_S, "binance", "BTC/USDT", hedge, scope=scope),
                    )
                    for hedge in (True, False)
                }
                h, u = runs[True], runs[False]
                latency = h["detect_latency_ms"]
                cells.append(
                    Cell(
                        depth,
                        fall_s,
                        scope,
                        h["detected"],
                        latency / 1e3 if latency is not None else None,
                        h["max_drawdown"],
                        u["max_drawdown"],
                        h["final_pnl"],
                        u["final_pnl"],
                        h["fees_paid"] + h["interest_paid"],
                        h["liquidations"],
                        h["false_alarms"],
                    )
                )
    return cells


def recorded_sessions() -> dict[str, list[MarketMessage]]:
    """Every recorded session in tests/data, once each (the 5-venue sample, the executor's 20 s file and
    ingest/binance/hftbacktest are cut from, or are, sessions listed here already)."""
    sessions = {str(GRID_DATA.relative_to(DATA)): load_messages(GRID_DATA)}
    for folder in sorted((DATA / "ingest").glob("*/*")):
        # bybit v5: 50 book frames without receive times; binance/hftbacktest: the risk file's own source
        if folder.is_dir() and folder.name not in ("v5", "hftbacktest"):
            sessions[str(folder.relative_to(DATA))] = load_capture(folder)
    return sessions


def false_alarms(risk: RiskSettings, sessions: dict[str, list[MarketMessage]]) -> tuple[int, float, dict[str, int]]:
    """Crash starts with nothing injected: total, venue-hours of data, per session."""
    per_session: dict[str, int] = {}
    hours = 0.0
    for name, messages in sessions.items():
        detector = CrashDetector(risk.crash)
        alarms = 0
        spans: dict[str, list[int]] = {}
        for msg in messages:
            t = detector.on_book(msg) if isinstance(msg, BookUpdate) else detector.on_trade(msg)
            if t is not None and t.to_state == "crash" and t.from_state == "normal":
                alarms += 1
            span = spans.setdefault(msg.exchange, [msg.recv_ts, msg.recv_ts])
            span[1] = msg.recv_ts
        per_session[name] = alarms
        hours += sum(b - a for a, b in spans.values()) / NS / 3600
    return sum(per_session.values()), hours, per_session


def run(ctx: BenchContext | None = None) -> dict[str, float | int | str]:
    risk = RiskSettings()
    cells = grid(risk)
    alarms, hours, _ = false_alarms(risk, recorded_sessions())
    targeted = [c for c in cells if c.targeted]
    latencies = sorted(c.latency_s for c in cells if c.latency_s is not None)
    return {
        "crash_detect_rate": round(sum(c.detected for c in cells) / len(cells), 3),
        "crash_detect_rate_targeted": round(sum(c.detected for c in targeted) / len(targeted), 3),
        "crash_hedge_ok_rate_targeted": round(sum(c.hedge_ok for c in targeted) / len(targeted), 3),
        "crash_grid_liquidations": sum(c.liquidations for c in cells),
        "crash_grid_latency_median_s": round(latencies[len(latencies) // 2], 2) if latencies else -1,
        "crash_false_alarms": alarms,
        "crash_false_alarm_hours": round(hours, 3),
        "crash_false_alarms_per_day": round(alarms / hours * 24, 2) if hours else -1,
    }


def table(cells: list[Cell]) -> str:
    head = (
        "| scope | fall | depth | detected | latency | hedged DD | unhedged DD | hedged PnL | unhedged PnL"
        " | costs | liq. | ok |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {c.scope} | {c.fall_s:g} s | {c.depth:.0%} | {'yes' if c.detected else 'no'} | "
        f"{f'{c.latency_s:.1f} s' if c.latency_s is not None else '-'} | {c.drawdown_hedged:.2%} | "
        f"{c.drawdown_unhedged:.2%} | {c.pnl_hedged:,.0f} | {c.pnl_unhedged:,.0f} | {c.costs:,.0f} | "
        f"{c.liquidations} | {'yes' if c.hedge_ok else 'no'} |"
        for c in cells
    ]
    return "\n".join([head, *rows])


def vpin(trades: list[Trade], bucket: float, n: int = 50) -> list[tuple[int, float]]:
    """VPIN (Easley, López de Prado, O'Hara 2012): mean |buys - sells| / bucket over the last ``n``
    volume buckets, after each trade once ``n`` buckets are full."""
    out: list[tuple[int, float]] = []
    buys = sells = 0.0
    history: deque[float] = deque(maxlen=n)
    for t in trades:
        amount = t.amount
        while amount > 0:
            take = min(amount, bucket - buys - sells)
            buys, sells = (buys + take, sells) if t.side == "buy" else (buys, sells + take)
            amount -= take
            if buys + sells >= bucket * (1 - 1e-12):
                history.append(abs(buys - sells) / bucket)
                buys = sells = 0.0
        if len(history) == n:
            out.append((t.recv_ts, sum(history) / n))
    return out


def vpin_report() -> None:
    """Does VPIN rise above its calm maximum before the price rule fires? (It does not: see the README.)"""
    messages = load_messages(GRID_DATA)
    spot = [m for m in messages if isinstance(m, Trade) and m.exchange == "binance"]
    per_s = sum(t.amount for t in spot) / ((spot[-1].recv_ts - spot[0].recv_ts) / NS)
    start = spot[0].recv_ts + int(CRASH_AT_S * NS)
    for bucket_s in (1.0, 5.0):
        calm = sorted(v for _, v in vpin(spot, per_s * bucket_s))
        print(f"{bucket_s:g} s buckets: calm VPIN median {calm[len(calm) // 2]:.2f}, max {calm[-1]:.2f}")
        for depth, fall_s in ((0.08, 30.0), (0.05, 120.0)):
            profile = CrashProfile(frozenset({"binance"}), start, depth, fall_s, RECOVER_S)
            crashed = [m for m in inject(messages, profile) if isinstance(m, Trade) and m.exchange == "binance"]
            series = vpin(crashed, per_s * bucket_s)
            above = next(((ts - start) / NS for ts, v in series if ts > start and v > calm[-1]), None)
            when = "never" if above is None else f"{above:.1f} s after the start"
            print(f"  {depth:.0%} in {fall_s:g} s: above the calm maximum {when}")


def main() -> int:
    """The README's grid table and false-alarm count; ``--day CAPTURE``: the false alarms of one capture only;
    ``--vpin``: the flow-toxicity check."""
    risk = RiskSettings()
    if sys.argv[1:2] == ["--vpin"]:
        vpin_report()
        return 0
    if sys.argv[1:2] == ["--day"]:
        day = Path(sys.argv[2])
        alarms, hours, _ = false_alarms(risk, {day.name: load_capture(day)})
        print(f"{day}: {alarms} false alarms in {hours:.2f} venue-hours")
        return 0
    print(table(grid(risk)))
    alarms, hours, per_session = false_alarms(risk, recorded_sessions())
    for name, n in per_session.items():
        print(f"{name}: {n}")
    print(f"false alarms: {alarms} in {hours:.3f} venue-hours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
