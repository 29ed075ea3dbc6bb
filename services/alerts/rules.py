"""Which bus messages become alerts, and what each alert says: what happened, where, why, what was done.

Pure functions of the messages (and, for stale feeds, of the time a venue went bad), so the wording and
the choice of events are tested without a bus.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from shared.schemas import PolicyUpdate, RiskEvent, Status

NS = 1_000_000_000
BAD_FEED_STATES = frozenset({"stale", "gap", "disconnected", "error"})


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: ``key`` identifies it for deduplication (the same what and where)."""

    kind: str
    severity: str
    what: str
    where: str
    why: str
    done: str
    ts: int  # nanoseconds UTC of the event

    @property
    def key(self) -> str:
        return f"{self.kind}|{self.where}|{self.why}"

    def as_json(self) -> dict[str, Any]:
        return {"source": "tradewind", **asdict(self), "text": self.text()}

    def text(self) -> str:
        """One message a person reads on a phone."""
        icon = {"critical": "🛑", "warning": "⚠️"}.get(self.severity, "ℹ️")
        return f"{icon} {self.what} — {self.where}\nwhy: {self.why}\ndone: {self.done}"


def _where(exchange: str | None, symbol: str | None = None) -> str:
    venue = exchange or "every venue"
    return f"{venue} {symbol}" if symbol else venue


def _detail(event: RiskEvent, *names: str) -> str:
    parts = [f"{n}={event.detail[n]}" for n in names if event.detail.get(n) not in (None, "")]
    return ", ".join(parts)


def from_risk_event(event: RiskEvent) -> Alert | None:
    """The alert a risk event raises, or None for the events nobody needs to be woken for."""
    where = _where(event.exchange, event.symbol)
    d = event.detail
    if event.kind == "halt":
        who = "a human" if d.get("cause") == "human" else "the risk service"
        return Alert(
            "halt",
            "critical",
            f"Trading halted by {who}",
            where,
            str(d.get("reason") or d.get("detail") or "no reason given"),
            "new orders are rejected (risk.halted) and resting orders cancelled until a resume",
            event.ts,
        )
    if event.kind == "resume":
        who = "a human" if d.get("cause") == "human" else "the risk service"
        forced = " (forced)" if d.get("force") else ""
        return Alert(
            "resume",
            "info",
            f"Trading resumed by {who}{forced}",
            where,
            str(d.get("reason") or d.get("halted_for") or "no reason given"),
            "orders are accepted again on this scope",
            event.ts,
        )
    if event.kind == "drawdown_halt":
        return Alert(
            "drawdown_halt",
            "critical",
            "Drawdown limit breached: everything halted",
            "every venue",
            _detail(event, *sorted(d)) or "drawdown over its limit",
            "all trading halted; only `tradewind resume --force --reason TEXT` lifts it",
            event.ts,
        )
    if event.kind == "crash_start":
        return Alert(
            "crash",
            "critical",
            "Flash crash detected",
            where,
            _detail(event, *sorted(d)) or "price velocity over its threshold",
            "buying into the venue stops; the hedger shorts the exposed inventory where it can",
            event.ts,
        )
    if event.kind == "hedge_open":
        return Alert(
            "hedge_open",
            "warning",
            "Crash hedge opened",
            where,
            _detail(event, *sorted(d)) or "a crash on an exposed market",
            "a short hedge was placed; it is closed on recovery",
            event.ts,
        )
    if event.kind == "hedge_closed":
        return Alert(
            "hedge_closed",
            "info",
            "Crash hedge closed",
            where,
            _detail(event, "venue") or "the market recovered",
            "the hedge was bought back",
            event.ts,
        )
    if event.kind == "service_gave_up":
        return service_gave_up(str(d.get("service") or "?"), str(d.get("why") or "crash loop"), event.ts)
    if event.kind == "reconcile_mismatch":
        return Alert(
            "reconcile_mismatch",
            "critical",
            "Books and venue disagree",
            where,
            _detail(event, *sorted(d)) or "reconciliation mismatch",
            "the executor halted the venue until a human resumes with --force",
            event.ts,
        )
    return None


def feed_went_bad(status: Status) -> bool:
    return status.state in BAD_FEED_STATES


def stale_feed(exchange: str, state: str, since_ns: int, now_ns: int, detail: str = "") -> Alert:
    """A venue's feed bad for longer than the configured threshold."""
    seconds = (now_ns - since_ns) / NS
    return Alert(
        "feed_stale",
        "warning",
        "Market-data feed down",
        exchange,
        f"feed {state} for {seconds:.0f}s" + (f" ({detail})" if detail else ""),
        "the risk service halts the venue while its data is stale; ingest keeps reconnecting",
        now_ns,
    )


def from_policy_update(update: PolicyUpdate) -> Alert:
    markets = ", ".join(f"{e}:{s}" for e, s in update.markets) or _where(update.exchange, update.symbol)
    figures = ", ".join(f"{k}={v:.4g}" for k, v in sorted(update.metrics.items())[:6])
    return Alert(
        "policy_promoted",
        "info",
        f"Policy {update.policy_id} ({update.algo}) promoted",
        markets,
        figures or "it beat the champion and the baselines on held-out data",
        "executors load it for these markets",
        update.ts,
    )


def from_unwind(row: dict[str, Any]) -> Alert:
    """An arbitrage execution that failed and was unwound (a row of arb_executions)."""
    failed = row["status"] == "unwind_failed"
    return Alert(
        "arb_unwind",
        "critical" if failed else "warning",
        "Arbitrage unwind failed" if failed else "Arbitrage cycle unwound",
        f"{row['exchange']} {'→'.join(row['assets'])}",
        f"{row['failure'] or 'a leg failed'}; expected {row['expected_profit']:+.6g},"
        f" realized {row['realized_profit']:+.6g}",
        "leftover assets were sold back" if not failed else "leftovers could not all be sold back: check the balances",
        int(row["finished_at"].timestamp() * NS),
    )


def service_gave_up(service: str, why: str, ts: int) -> Alert:
    return Alert(
        "service_gave_up",
        "critical",
        f"Service {service} given up",
        service,
        why,
        "the supervisor stopped restarting it; the other services keep running",
        ts,
    )
