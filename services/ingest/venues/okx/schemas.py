"""OKX v5 public wire messages, one msgspec Struct each.

Book levels stay strings: the checksum is computed over OKX's own text of each level.
"""

from __future__ import annotations

import msgspec

from services.ingest.book import TextLevel, crc32_signed, interleave
from shared.schemas import Trade
from shared.schemas.messages import Side

MS = 1_000_000


class Arg(msgspec.Struct):
    channel: str
    instId: str = ""


class TradeData(msgspec.Struct):
    """``{"instId":"BTC-USD-220527","tradeId":"7849","px":"30218.8","sz":"1","side":"buy",
    "ts":"1652459199958"}``; ``side`` is the taker's."""

    instId: str
    tradeId: str
    px: float
    sz: float
    side: str
    ts: int

    def to_trade(self, exchange: str, symbol: str, recv_ts: int) -> Trade:
        side: Side = "buy" if self.side == "buy" else "sell"
        return Trade(exchange, symbol, self.tradeId, self.px, self.sz, side, self.ts * MS, recv_ts)


class BookData(msgspec.Struct):
    """``{"asks":[["30249.4","0","0","0"],["30261","4","0","1"]],"bids":[["30182.6","452","0","1"]],
    "ts":"1652459225464","checksum":-914047754}``; current API adds ``seqId`` and ``prevSeqId``
    (-1 on a snapshot). Levels: price, size, deprecated, order count; size "0" deletes."""

    asks: list[list[str]]
    bids: list[list[str]]
    ts: str = "0"
    checksum: int | None = None
    seqId: int | None = None
    prevSeqId: int | None = None

    def text_levels(self) -> tuple[list[TextLevel], list[TextLevel]]:
        return [(b[0], b[1]) for b in self.bids], [(a[0], a[1]) for a in self.asks]


class Push(msgspec.Struct):
    """A data push: ``{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[...]}``
    (``action`` only on books)."""

    arg: Arg
    data: list[msgspec.Raw]
    action: str = ""


class Event(msgspec.Struct):
    """``{"event":"subscribe","arg":{...}}`` or ``{"event":"error","code":"60012","msg":"..."}``."""

    event: str
    code: str = ""
    msg: str = ""


push_decoder = msgspec.json.Decoder(Push)
event_decoder = msgspec.json.Decoder(Event)
trades_decoder = msgspec.json.Decoder(TradeData, strict=False)
book_decoder = msgspec.json.Decoder(BookData)


def checksum(bids: list[TextLevel], asks: list[TextLevel]) -> int:
    """OKX's signed CRC32 of ``bid1px:bid1sz:ask1px:ask1sz:bid2px:...`` over the best 25 per side."""
    return crc32_signed(":".join(f"{p}:{s}" for p, s in interleave(bids, asks)))
