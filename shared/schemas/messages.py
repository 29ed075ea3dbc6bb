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
    "margin_low",  # a margin account under ``margin_floor``: collateral topped up, else its shorts bought back
    "margin_top_up",  # the executor's outcome of a top-up transfer (done, rejected, or unknown: never resent)
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
    "service_gave_up",  # `tradewind up`'s supervisor stopped restarting a crash-looping service or server
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


class PolicyVerdict(Message, tag="verdict", frozen=True):
    """One online training round's verdict, on `policy:updates` beside the promotions: what was tried, how
    it did on the held-out bars beside the champion and the baselines, whether it was promoted and why (not)."""

    round: int
    ts: int
    markets: list[tuple[str, str]]
    trials: list[str]  # the policy ids the round recorded
    promoted: bool
    reason: str
    best: str | None = None  # the round's best trial (the one judged)
    sharpe: float | None = None  # its held-out Sharpe
    total_return: float | None = None
    champion_sharpe: float | None = None  # the champion's on the same bars; None: no champion yet
    baselines: dict[str, float] = {}  # baseline name -> held-out Sharpe
    notes: list[str] = []  # e.g. the sample looped: bars after the loop were not used


ArbEventKind = Literal["opportunity", "execution", "transfer"]


class ArbEvent(Message, tag="arb", frozen=True):
    """An arbitrage strategy's opportunity (with the guards' decision), execution (expected vs realised)
    or inventory transfer (its cost charged to the strategy's PnL), on `arb:events` for the dashboard."""

    kind: ArbEventKind
    strategy: str  # "arb" (cycles inside one venue) | "xarb" (across venues)
    ts: int
    exchange: str  # the venue; "BUY>SELL" for a cross-venue trade; "FROM>TO" for a transfer
    assets: list[str] = []
    decision: str = ""  # opportunity: "fired" or the refusal; execution: its status
    execution_id: str = ""
    expected_profit: float = 0.0  # in ``profit_asset``
    realized_profit: float = 0.0  # execution: realised; transfer: minus its cost
    profit_asset: str = ""
    pnl: float | None = None  # xarb: the strategy's running PnL in ``profit_asset`` (executions minus transfers)
    detail: dict[str, float | str] = {}


TransferStatus = Literal["requested", "done", "rejected", "unknown"]


class WalletTransfer(Message, tag="transfer", frozen=True):
    """Collateral moved between two wallets of one venue (spot → margin: the risk service's top-up).

    Asked for on ``orders:transfers`` (status "requested"); the executor claims ``transfer_id`` once and
    publishes the outcome on ``orders:events``: "done" (with the venue's id), "rejected" (definitely not
    moved, ``reason`` says why) or "unknown" (it may have moved: never resent, the wallets tell)."""

    transfer_id: str  # idempotency key: a transfer seen twice moves once
    exchange: str
    asset: str
    amount: float
    from_wallet: str  # wallet names of the executor's balances: spot | cross | isolated:BASE/QUOTE
    to_wallet: str
    ts: int
    reason: str = ""  # request: why ("margin_top_up"); outcome: the refusal or error
    status: TransferStatus = "requested"
    venue_transfer_id: str = ""


AnyMessage = (
    Trade
    | BookUpdate
    | Status
    | OrderIntent
    | OrderEvent
    | RiskEvent
    | RiskControl
    | PolicyUpdate
    | PolicyVerdict
    | ArbEvent
    | WalletTransfer
)
