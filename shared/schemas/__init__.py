"""Normalized messages, their codec and the stream names."""

from shared.schemas import streams
from shared.schemas.codec import DecodeError, decode, encode, to_json
from shared.schemas.messages import (
    AnyMessage,
    ArbEvent,
    BookUpdate,
    Fill,
    Message,
    OrderEvent,
    OrderIntent,
    PolicyUpdate,
    PolicyVerdict,
    RiskControl,
    RiskEvent,
    RiskEventKind,
    Status,
    Trade,
    WalletTransfer,
)

__all__ = [
    "AnyMessage",
    "ArbEvent",
    "BookUpdate",
    "DecodeError",
    "Fill",
    "Message",
    "OrderEvent",
    "OrderIntent",
    "PolicyUpdate",
    "PolicyVerdict",
    "RiskControl",
    "RiskEvent",
    "RiskEventKind",
    "Status",
    "Trade",
    "WalletTransfer",
    "decode",
    "encode",
    "streams",
    "to_json",
]
