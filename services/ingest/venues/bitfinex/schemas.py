"""Bitfinex v2 frames. Events are objects (``{"event":"subscribed","channel":"book","chanId":232955,
"symbol":"tIOTETH",...}``); data frames are arrays ``[chanId, payload, seq]`` (``seq`` with the
SEQ_ALL flag), decoded untyped because their shape depends on the channel.

- book snapshot ``[232955,[[0.0010237,1,1527.3],...],27]``, update ``[232955,[0.0010238,0,1],41]``:
  ``[price, count, amount]``; amount > 0 a bid, < 0 an ask; count 0 deletes the level.
- trade ``[232959,"te",[401597395,1574694478808,0.005,7245.3],55]``: ``[id, ms, amount, price]``,
  amount > 0 the taker bought; ``tu`` repeats a ``te`` (not re-published); a list of them on
  subscribing is history (not published).
- heartbeat ``[232949,"hb",12]``.
"""

from __future__ import annotations

import msgspec

from shared.schemas import Trade
from shared.schemas.messages import Side

MS = 1_000_000
Level = tuple[float, float]


class Event(msgspec.Struct):
    event: str
    channel: str = ""
    chanId: int = 0
    symbol: str = ""
    flags: int = 0
    status: str = ""
    code: int = 0
    msg: str = ""


event_decoder = msgspec.json.Decoder(Event)


def book_levels(levels: list[list[float]]) -> tuple[list[Level], list[Level]]:
    """``[price, count, amount]`` rows -> (bids, asks) as (price, size); size 0 deletes."""
    bids: list[Level] = []
    asks: list[Level] = []
    for price, count, amount in levels:
        side = bids if amount > 0 else asks
        side.append((float(price), 0.0 if count == 0 else abs(float(amount))))
    return bids, asks


def trade_of(row: list[float], exchange: str, symbol: str, recv_ts: int) -> Trade:
    trade_id, ms, amount, price = row[0], row[1], row[2], row[3]
    side: Side = "buy" if amount > 0 else "sell"
    return Trade(exchange, symbol, str(int(trade_id)), float(price), abs(float(amount)), side, int(ms) * MS, recv_ts)
