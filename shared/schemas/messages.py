"""Normalized messages crossing service boundaries (DESIGN.md, Normalized messages).

Frozen msgspec Structs with a ``type`` tag, so one decoder reads any stream. Timestamps are
integer nanoseconds UTC. Prices and amounts are floats here; the ledger converts to Decimal.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Side = Literal["buy", "sell"]
Level = tuple[float, float]


class Message(msgspec.Struct, frozen=True, tag_field="type", omit_defaults=True):
    """Base of every message on the bus."""


class Trade(Message, tag="trade", frozen=True):
    exchange: str
    symbol: str
    trade_id: str
    price: float
    amount: float
    side: Side  # the taker's side
    ts: int
    recv_ts: int


class BookUpdate(Message, tag="book", frozen=True):
    exchange: str
    symbol: str
    seq: int
    ts: int
    recv_ts: int
    bids: list[Level]
    asks: list[Level]
    snapshot: bool = False  # True replaces the book; otherwise amount 0 deletes a level


FeedState = Literal["connected", "disconnected", "gap", "resynced", "stale", "error"]


class Status(Message, tag="status", frozen=True):
    exchange: str
    state: FeedState
    ts: int
    symbol: str | None = None
    detail: str = ""


OrderType = Literal["market", "limit", "ioc", "post_only"]
MarginMode = Literal["isolated", "cross"]


class OrderIntent(Message, tag="intent", frozen=True):
    client_order_id: str  # idempotency key: an intent seen twice places one order
    exchange: str
    symbol: str
    side: Side
    order_type: OrderType
    amount: float
    ts: int
    price: float | None = None
    strategy: str = ""
    margin_mode: MarginMode | None = None
    reduce_only: bool = False
    cancel: bool = False  # True cancels the order with this client_order_id


class Fill(msgspec.Struct, frozen=True, omit_defaults=True):
    fill_id: str
    price: float
    amount: float
    fee: float
    fee_asset: str
    ts: int
    liquidity: Literal["maker", "taker"] = "taker"


# "unknown": the venue may or may not have the order (a timeout, a 5xx, a rate limit while placing);
# the executor looks it up by client order id and reports what it finds, never resending it blindly.
OrderStatus = Literal["accepted", "rejected", "partially_filled", "filled", "cancelled", "unknown"]


class OrderEvent(Message, tag="order", frozen=True):
    client_order_id: str
    exchange: str
    symbol: str
    side: Side
    status: OrderStatus
    ts: int
    order_id: str = ""
    filled: float = 0.0
    remaining: float = 0.0
    avg_price: float = 0.0
    fills: list[Fill] = []
    reason: str = ""  # rejection reason code, e.g. "risk.max_notional", "venue.min_notional"


RiskEventKind = Literal[
    "halt",  # a venue's feed went bad or stale (risk), or a human's halt (`tradewind halt`)
    "resume",  # the same, lifted
    "drawdown_halt",  # intraday or total drawdown over its limit: everything halts
    "drawdown_reset",  # a forced resume lifted a drawdown halt; the peaks restart from today's equity
    "margin_low",  # a margin account under ``margin_floor``: its shorts are bought back
    "crash_start",  # the flash-crash detector's states of one market
    "crash_recovery",
    "crash_end",
    "hedge_open",  # a crash hedge sized, opened, closed, or impossible
    "hedge_closed",
    "hedge_unavailable",
    "margin_call",  # the paper venue's notices (shared.paper)
    "liquidation",
    "reconcile_mismatch",  # the executor's books and the venue's balances disagree
    "service_start",  # the risk service started, with its limits
    "control_refused",  # a risk:control entry unsigned, forged, replayed or beyond its signer's authority
]


class RiskEvent(Message, tag="risk", frozen=True):
    # One of RiskEventKind. A plain str on the wire: msgspec refuses a Literal's unknown value, and
    # an entry written by an older or newer version (its whole batch) must still decode. Builders
    # type their kinds as RiskEventKind; tests/shared/test_schemas.py checks every one in the source.
    kind: str
    ts: int
    severity: Literal["info", "warning", "critical"] = "info"
    exchange: str | None = None
    symbol: str | None = None
    detail: dict[str, float | int | str | bool | None] = {}


class RiskControl(Message, tag="control", frozen=True):
    action: Literal["halt", "resume", "set_limit", "heartbeat"]
    ts: int
    reason: str = ""
    exchange: str | None = None  # None: every venue
    limits: dict[str, float] = {}
    issued_by: str = ""
    # Halts and resumes: which halt (shared.halts). "human" for `tradewind halt`; the risk service's
    # "drawdown", "feed", "stale"; a human resume lifts a "drawdown" halt only with ``force``.
    cause: str = ""
    force: bool = False
    # Who signed it and when (wall clock), and the HMAC-SHA256 over everything else (shared.signing):
    # consumers refuse an unsigned, forged, replayed or stale control.
    signer: str = ""
    signed_at: int = 0
    sig: str = ""


class PolicyUpdate(Message, tag="policy", frozen=True):
    policy_id: str
    algo: str
    checkpoint_uri: str
    ts: int
    exchange: str | None = None
    symbol: str | None = None
    metrics: dict[str, float] = {}
    # The policy's market set, (exchange, symbol) pairs: several for a portfolio policy; a one-market policy
    # may name its market here or only in exchange/symbol (what older producers send).
    markets: list[tuple[str, str]] = []


AnyMessage = Trade | BookUpdate | Status | OrderIntent | OrderEvent | RiskEvent | RiskControl | PolicyUpdate
