"""Stream names and field keys: the one place they are spelled (see DESIGN.md, Streams)."""

from __future__ import annotations

FIELD = "d"  # every entry carries one field holding one encoded message or a batch

MD_STATUS = "md:status"
ORDERS_INTENTS = "orders:intents"
ORDERS_EVENTS = "orders:events"
RISK_EVENTS = "risk:events"
RISK_CONTROL = "risk:control"
POLICY_UPDATES = "policy:updates"

DEAD_LETTER_PREFIX = "dlq:"
RISK_STATE = "tw:risk:state"  # string: the risk service's latest state as JSON (`tradewind status`)
HALTS = "tw:halts"  # hash: halt id -> the active halt (shared.halts), written with its risk:control entry
STATS_KEY = "tw:stats"  # hash: "<stream>:entries" / "<stream>:msgs" written by shared.bus publishers


def md_trades(exchange: str) -> str:
    return f"md:trades:{exchange}"


def md_book(exchange: str) -> str:
    return f"md:book:{exchange}"


def dead_letter(stream: str) -> str:
    return DEAD_LETTER_PREFIX + stream
