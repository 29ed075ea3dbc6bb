"""Stream names and field keys: the one place they are spelled (see DESIGN.md, Streams)."""

from __future__ import annotations

FIELD = "d"  # every entry carries one field holding one encoded message or a batch

MD_STATUS = "md:status"
ORDERS_INTENTS = "orders:intents"
ORDERS_EVENTS = "orders:events"
ORDERS_TRANSFERS = "orders:transfers"  # wallet transfers asked of the executor (risk's margin top-ups)
RISK_EVENTS = "risk:events"
RISK_CONTROL = "risk:control"
POLICY_UPDATES = "policy:updates"
ARB_EVENTS = "arb:events"  # arbitrage opportunities, executions and rebalancing transfers (both strategies)

# Keys that are written in one MULTI with a stream carry the stream's name as a hash tag ("{...}"),
# so that on a Redis Cluster they live in the stream's slot; the streams themselves have no tag, so
# different streams spread over the cluster.
DEAD_LETTER_PREFIX = "dlq:"
RISK_STATE = "tw:risk:state"  # string: the risk service's latest state as JSON (`tradewind status`)
HALTS = "tw:halts:{risk:control}"  # hash: halt id -> active halt (shared.halts), written with its risk:control entry
STATS_PREFIX = "tw:stats:"  # + "{<stream>}": hash of "entries" / "msgs" the shared.bus publishers wrote to it


def md_trades(exchange: str) -> str:
    return f"md:trades:{exchange}"


def md_book(exchange: str) -> str:
    return f"md:book:{exchange}"


def dead_letter(stream: str) -> str:
    """``dlq:{<stream>}``: the stream's slot, so that dead-lettering (XADD here + XACK there) is one MULTI."""
    return f"{DEAD_LETTER_PREFIX}{{{stream}}}"


def stats_key(stream: str) -> str:
    """``tw:stats:{<stream>}``: the publishers' write counters of ``stream``, in the stream's slot."""
    return f"{STATS_PREFIX}{{{stream}}}"


def stats_stream(key: str) -> str | None:
    """The stream a ``stats_key`` counts (None for any other key)."""
    if key.startswith(STATS_PREFIX + "{") and key.endswith("}"):
        return key[len(STATS_PREFIX) + 1 : -1]
    return None
