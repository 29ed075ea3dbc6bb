"""Bitfinex v2 frames. Events are objects (``{"event":"subscribed","channel":"book","chanId":232955,
"symbol":"tIOTETH",...}``); data frames are arrays ``[chanId, payload, seq]`` (``seq`` with the
SEQ_ALL flag), decoded untyped because their shape depends on the channel.

- book snapshot ``[232955,[[0.0010237,1,1527.3],...],27]``, update ``[232955,[0.0010238,0,1],41]``:
  ``[price, count, amount]``; amount > 0 a bid, < 0 an ask; count 0 deletes the level.
- trade ``[232959,"te",[401597395,1574694478808,0.005,7245.3],55]``: ``[id, ms, amount, price]``,
  amount > 0 the taker bought; ``tu`` repeats a ``te`` (not re-published); a list of them on
  subscribing is history (not published).
- heartbeat ``[232949,"hb",12]``.
- book checksum (``OB_CHECKSUM`` flag) ``[232955,"cs",-1380769416,42]``: see ``book_checksum``.
"""

from __future__ import annotations

from decimal import Decimal
from itertools import zip_longest

import msgspec

from services.ingest.book import crc32_signed
from services.ingest.venues.bitfinex.config import CHECKSUM_LEVELS
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


def js_number(value: float) -> str:
    """``value`` as JavaScript's ``String(number)`` writes it (what Bitfinex's checksum strings
    hold): shortest round-trip digits, no ``.0`` on integers, exponent form below 1e-6."""
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    point = len(text) + exponent  # where the decimal point goes after the first digit of ``text``
    if -6 < point <= 21:
        if point <= 0:
            body = "0." + "0" * -point + text
        elif point >= len(text):
            body = text + "0" * (point - len(text))
        else:
            body = f"{text[:point]}.{text[point:]}"
    else:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        body = f"{mantissa}e{'+' if point > 0 else '-'}{abs(point - 1)}"
    return ("-" if sign else "") + body


def fixed_price(value: float) -> str:
    """A price in the checksum: like ``js_number`` but never in exponent form (``1.7e-8`` ->
    ``0.000000017``), as Bitfinex's own client library writes prices."""
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def book_checksum(bids: list[Level], asks: list[Level]) -> int:
    """Bitfinex's book checksum: signed CRC32 of ``bid0.price:bid0.amount:ask0.price:ask0.amount:
    bid1...`` over the best 25 levels per side (bids high to low, asks low to high; an ask's
    amount negative), a side that runs out simply stops contributing."""
    parts: list[str] = []
    for bid, ask in zip_longest(bids[:CHECKSUM_LEVELS], asks[:CHECKSUM_LEVELS]):
        if bid is not None:
            parts += (fixed_price(bid[0]), js_number(bid[1]))
        if ask is not None:
            parts += (fixed_price(ask[0]), js_number(-ask[1]))
    return crc32_signed(":".join(parts))


def trade_of(row: list[float], exchange: str, symbol: str, recv_ts: int) -> Trade:
    trade_id, ms, amount, price = row[0], row[1], row[2], row[3]
    side: Side = "buy" if amount > 0 else "sell"
    return Trade(exchange, symbol, str(int(trade_id)), float(price), abs(float(amount)), side, int(ms) * MS, recv_ts)
