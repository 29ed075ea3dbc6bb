"""Gemini v2 market data messages, one msgspec Struct each (``type`` is the tag)."""

from __future__ import annotations

import msgspec

from shared.schemas import Trade
from shared.schemas.messages import Side

MS = 1_000_000


class TradeMessage(msgspec.Struct, tag_field="type", tag="trade"):
    """``{"type":"trade","symbol":"ALCXUSD","event_id":45465785975,"timestamp":1624493651491,
    "price":"302.53","quantity":"0.992143","side":"buy"}``; ``side`` is the taker's."""

    symbol: str
    event_id: int
    timestamp: int
    price: float
    quantity: float
    side: str

    def to_trade(self, exchange: str, symbol: str, recv_ts: int) -> Trade:
        side: Side = "buy" if self.side == "buy" else "sell"
        return Trade(
            exchange, symbol, str(self.event_id), self.price, self.quantity, side, self.timestamp * MS, recv_ts
        )


class L2Updates(msgspec.Struct, tag_field="type", tag="l2_updates"):
    """Changed levels, ``[side, price, new quantity]`` ("0" removes). The first one after
    subscribing is the whole book and carries the symbol's recent ``trades`` (already published
    by an earlier session, so not re-published):
    ``{"type":"l2_updates","symbol":"ALCXUSD","changes":[["buy","302.75","0.00001"],...],
    "trades":[{"type":"trade",...},...],"auction_events":[]}``"""

    symbol: str
    changes: list[tuple[str, float, float]]
    trades: list[msgspec.Raw] | None = None


class Heartbeat(msgspec.Struct, tag_field="type", tag="heartbeat"):
    """``{"type":"heartbeat","timestamp":1624493666869}``"""

    timestamp: int = 0


Message = TradeMessage | L2Updates | Heartbeat
decoder = msgspec.json.Decoder(Message, strict=False)
