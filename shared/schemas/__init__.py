"""Normalized messages, their codec and the stream names."""

from shared.schemas import streams
from shared.schemas.codec import DecodeError, decode, encode, to_json
from shared.schemas.messages import (
    AnyMessage,
    BookUpdate,
    Fill,
    Message,
    OrderEvent,
    OrderIntent,
    PolicyUpdate,
    RiskControl,
    RiskEvent,
    RiskEventKind,
    Status,
    Trade,
)

__all__ = [
    "AnyMessage",
    "BookUpdate",
    "DecodeError",
    "Fill",
    "Message",
    "OrderEvent",
    "OrderIntent",
    "PolicyUpdate",
    "RiskControl",
    "RiskEvent",
    "RiskEventKind",
    "Status",
    "Trade",
    "decode",
    "encode",
    "streams",
    "to_json",
]
