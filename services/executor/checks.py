"""Inline pre-trade checks: the minimal set until the risk service supplies its rules.

A check is a plain function ``(intent, state) -> reason | None``; the executor runs a list of
them, so the risk issue can pass its own list without touching the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shared.schemas import OrderIntent


@dataclass
class RiskState:
    """What the checks look at: the halt switches (from `risk:control`), limits and prices."""

    max_notional: float
    halted_all: bool = False
    halted_venues: set[str] = field(default_factory=set)
    reference_price: Callable[[str, str], float | None] = lambda exchange, symbol: None


Check = Callable[[OrderIntent, RiskState], str | None]


def check_halted(intent: OrderIntent, state: RiskState) -> str | None:
    if intent.reduce_only or intent.cancel:
        return None  # reducing risk stays allowed while halted
    if state.halted_all or intent.exchange in state.halted_venues:
        return "risk.halted"
    return None


def check_max_notional(intent: OrderIntent, state: RiskState) -> str | None:
    price = intent.price or state.reference_price(intent.exchange, intent.symbol)
    if price is None:
        return None if intent.order_type != "market" else "risk.no_reference_price"
    if price * intent.amount > state.max_notional:
        return "risk.max_notional"
    return None


DEFAULT_CHECKS: tuple[Check, ...] = (check_halted, check_max_notional)


def pretrade(intent: OrderIntent, state: RiskState, checks: Sequence[Check] = DEFAULT_CHECKS) -> str | None:
    """Return the first failing check's reason, or None to let the order through."""
    for check in checks:
        reason = check(intent, state)
        if reason:
            return reason
    return None
