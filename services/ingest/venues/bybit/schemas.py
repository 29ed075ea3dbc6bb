"""Bybit v5 public wire messages, one msgspec Struct each.

Numbers arrive quoted; ``strict=False`` converts them to floats in C.
"""

from __future__ import annotations

import msgspec

from shared.schemas import Trade

MS = 1_000_000
Level = tuple[float, float]


class BookData(msgspec.Struct):
    """``{"s":"XRPUSDT","b":[["1.9531","6198"],...],"a":[["1.9535","8415"],...],"u":20254870,
    "seq":130020239005}``; ``u`` is the update id (each delta's is the previous + 1; ``u`` = 1 is
    a snapshot after a service restart), size "0" deletes a level."""

    s: str
    b: list[Level]
    a: list[Level]
    u: int
    seq: int = 0


class BookMessage(msgspec.Struct):
    """``{"topic":"orderbook.500.XRPUSDT","type":"delta","ts":1733011200693,"data":{...},
    "cts":1733011200591}``"""

    topic: str
    type: str
    ts: int
    data: BookData
    cts: int = 0


class TradeData(msgspec.Struct):
    """``{"T":1671181689021,"s":"BTCUSDT","S":"Buy","v":"0.002","p":"17032.50","L":"MinusTick",
    "i":"d9cd8295-40dc-5dce-8deb-42882580a7ab","BT":false}`` (``S``: the taker's side; ``BT``: a
    block trade, not an order-book trade)."""

    T: int
    s: str
    S: str
    v: float
    p: float
    i: str
    BT: bool = False

    def to_trade(self, exchange: str, symbol: str, recv_ts: int) -> Trade:
        return Trade(
            exchange, symbol, self.i, self.p, self.v, "buy" if self.S == "Buy" else "sell", self.T * MS, recv_ts
        )


class TradeMessage(msgspec.Struct):
    """``{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1671181689023,"data":[...]}``"""

    topic: str
    data: list[TradeData]
    ts: int = 0


class Topic(msgspec.Struct):
    topic: str = ""
    op: str = ""
    success: bool = True
    ret_msg: str = ""


book_decoder = msgspec.json.Decoder(BookMessage, strict=False)
trade_decoder = msgspec.json.Decoder(TradeMessage, strict=False)
topic_decoder = msgspec.json.Decoder(Topic)
