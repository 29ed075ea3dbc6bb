"""Bitstamp v2 wire messages, one msgspec Struct each (numbers as floats via ``strict=False``)."""

from __future__ import annotations

import msgspec

from shared.schemas import Trade
from shared.schemas.messages import Side

US = 1_000
Level = tuple[float, float]


class TradeData(msgspec.Struct):
    """``{"id":216000477,"timestamp":"1641343699","amount":0.0792,"amount_str":"0.07920000",
    "price":3805.44,"price_str":"3805.44","type":0,"microtimestamp":"1641343699596000",...}``;
    ``type`` 0: the taker bought, 1: sold."""

    id: int
    amount_str: float
    price_str: float
    type: int
    microtimestamp: int

    def to_trade(self, exchange: str, symbol: str, recv_ts: int) -> Trade:
        side: Side = "buy" if self.type == 0 else "sell"
        return Trade(
            exchange, symbol, str(self.id), self.price_str, self.amount_str, side, self.microtimestamp * US, recv_ts
        )


class BookData(msgspec.Struct):
    """A diff (``diff_order_book_<pair>``) or a REST snapshot (``GET /api/v2/order_book/<pair>/``):
    ``{"timestamp":"1641343691","microtimestamp":"1641343691244908","bids":[["1.15979",
    "993.02588113"]],"asks":[["1.16601","1200.00000000"]]}``; amount 0 deletes (diffs)."""

    microtimestamp: int
    bids: list[Level]
    asks: list[Level]


class TradeMessage(msgspec.Struct):
    data: TradeData
    channel: str
    event: str


class BookMessage(msgspec.Struct):
    data: BookData
    channel: str
    event: str


class Envelope(msgspec.Struct):
    """``{"data":{...},"channel":"diff_order_book_bateur","event":"data"}``"""

    channel: str = ""
    event: str = ""


envelope_decoder = msgspec.json.Decoder(Envelope)
trade_decoder = msgspec.json.Decoder(TradeMessage, strict=False)
book_decoder = msgspec.json.Decoder(BookMessage, strict=False)
snapshot_decoder = msgspec.json.Decoder(BookData, strict=False)
