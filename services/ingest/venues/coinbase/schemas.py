"""Coinbase Exchange wire messages, one msgspec Struct each (``type`` is the tag).

Numbers arrive quoted; ``strict=False`` converts them to floats in C.
"""

from __future__ import annotations

import msgspec

from services.ingest.venues.subscribed import iso_ns
from shared.schemas import Trade
from shared.schemas.messages import Side

Level = tuple[float, float]


class Snapshot(msgspec.Struct, tag_field="type", tag="snapshot"):
    """The whole L2 book of a product, sent on subscribing to level2/level2_batch.

    ``{"type":"snapshot","product_id":"BAND-GBP","asks":[["14.8024","12.77"],...],
    "bids":[["14.7550","2.00"],...]}``
    """

    product_id: str
    bids: list[Level]
    asks: list[Level]
    time: str = ""


class L2Update(msgspec.Struct, tag_field="type", tag="l2update"):
    """Changed levels (new absolute size; "0" removes the level).

    ``{"type":"l2update","product_id":"SKL-BTC","changes":[["sell","0.00001306","660.5"]],
    "time":"2021-04-17T16:43:37.075687Z"}``
    """

    product_id: str
    changes: list[tuple[str, float, float]]
    time: str = ""


class Match(msgspec.Struct, tag_field="type", tag="match"):
    """One trade. ``side`` is the *maker's* side, so the taker did the opposite.

    ``{"type":"match","trade_id":280232,"maker_order_id":"2a0d...","taker_order_id":"3c82...",
    "side":"sell","size":"985","price":"0.00001305","product_id":"SKL-BTC","sequence":177100030,
    "time":"2021-04-17T16:43:37.089723Z"}``
    """

    trade_id: int
    side: str
    size: float
    price: float
    product_id: str
    sequence: int
    time: str

    def to_trade(self, exchange: str, symbol: str, recv_ts: int) -> Trade:
        taker: Side = "buy" if self.side == "sell" else "sell"
        return Trade(exchange, symbol, str(self.trade_id), self.price, self.size, taker, iso_ns(self.time), recv_ts)


class LastMatch(Match, tag="last_match"):
    """The product's latest trade before subscribing (already published by an earlier session)."""


Message = Snapshot | L2Update | Match | LastMatch

decoder = msgspec.json.Decoder(Message, strict=False)
