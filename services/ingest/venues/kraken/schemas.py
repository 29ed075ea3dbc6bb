"""Kraken v1 public frames. Data frames are JSON arrays ``[channelID, payload..., channelName, pair]``
(decoded untyped: their shape varies by channel); events are objects with an ``event`` field.

Book levels are kept as Kraken's strings: the checksum is defined over them.
"""

from __future__ import annotations

from services.ingest.book import TextLevel, crc32
from shared.schemas import Trade

NS = 1_000_000_000


def decimal_ns(text: str) -> int:
    """``"1618678133.365913"`` (seconds) -> ns."""
    whole, _, frac = text.partition(".")
    return int(whole) * NS + int((frac + "000000000")[:9])


def trades_of(payload: list, exchange: str, symbol: str, recv_ts: int) -> list[Trade]:
    """``[1665,[["13.27000","1.84400000","1618678138.297522","b","l",""]],"trade","WAVES/EUR"]``:
    price, volume, time, side (``b``: taker bought), order type, misc. v1 trades have no id, so
    the id is the trade's time and its position in the frame (unique per pair)."""
    return [
        Trade(
            exchange,
            symbol,
            f"{t[2]}-{i}",
            float(t[0]),
            float(t[1]),
            "buy" if t[3] == "b" else "sell",
            decimal_ns(t[2]),
            recv_ts,
        )
        for i, t in enumerate(payload)
    ]


def book_parts(frame: list) -> tuple[bool, list[TextLevel], list[TextLevel], str | None, int]:
    """A book frame -> (is snapshot, bids, asks, checksum or None, latest level time in ns).

    Snapshot: ``[1360,{"as":[["0.000022900","13355.87450757","1618678123.481570"],...],
    "bs":[...]},"book-1000","KSM/XBT"]``. Update: ``[992,{"b":[["354.15000000","5.00000000",
    "1618678133.365913"]],"c":"2583817756"},"book-1000","XMR/USD"]``, or with asks and bids in two
    objects: ``[1920,{"a":[...]},{"b":[...],"c":"4105471083"},"book-1000","SC/EUR"]``; a fourth
    level field ``"r"`` marks a republished level (applied the same way).
    """
    snapshot = False
    bids: list[TextLevel] = []
    asks: list[TextLevel] = []
    checksum = None
    latest = 0
    for part in frame[1:-2]:
        for key, levels in part.items():
            if key == "c":
                checksum = levels
                continue
            side = bids if key in ("b", "bs") else asks if key in ("a", "as") else None
            if side is None:
                raise ValueError(f"unknown book field {key!r}")
            snapshot = snapshot or key in ("as", "bs")
            for level in levels:
                price, volume, when = level[0], level[1], level[2]
                if not (isinstance(price, str) and isinstance(volume, str) and isinstance(when, str)):
                    raise TypeError(f"level {level!r}: price, volume and time must be strings")
                side.append((price, volume))
                latest = max(latest, decimal_ns(when))
    return snapshot, bids, asks, checksum, latest


def _digits(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def checksum(bids: list[TextLevel], asks: list[TextLevel]) -> int:
    """Kraken's CRC32 over the best 10 asks (low to high) then the best 10 bids (high to low),
    each level as price then volume with the decimal point and leading zeros removed."""
    text = "".join(_digits(p) + _digits(v) for p, v in asks) + "".join(_digits(p) + _digits(v) for p, v in bids)
    return crc32(text)
