"""Client order ids that every live venue accepts.

A client order id is the idempotency key of an order (DESIGN.md, Streams): the executor looks an
order up by it after a timeout, so it must reach the venue unchanged. The strictest limits among
the live venues are OKX's 32 characters and an alphabet of letters, digits, ``-`` and ``_``
(Binance 36, Bybit 36, Kraken's userref/cl_ord_id and Coinbase's UUID-sized ids all fit inside).
"""

from __future__ import annotations

import hashlib
import re

MAX_LENGTH = 32
_VALID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(n: int) -> str:
    """``n`` (>= 0) in lower-case base 36: a nanosecond timestamp in 13 characters."""
    if n < 0:
        raise ValueError(f"base36 needs a non-negative integer, got {n}")
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if n == 0:
            return out


def tag(text: str, length: int = 4) -> str:
    """A short stable tag for ``text`` (e.g. a venue name) that keeps ids of different venues apart."""
    digest = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
    return base36(digest)[-length:].rjust(length, "0")


def invalid_reason(client_order_id: str) -> str | None:
    """Why ``client_order_id`` would be refused by some live venue, or None when every venue takes it."""
    if _VALID.fullmatch(client_order_id):
        return None
    if not client_order_id:
        return "client order id is empty"
    if len(client_order_id) > MAX_LENGTH:
        return f"client order id {client_order_id!r} has {len(client_order_id)} characters (at most {MAX_LENGTH})"
    return f"client order id {client_order_id!r} has characters outside [A-Za-z0-9_-]"


def client_order_id(prefix: str, now_ns: int, *, key: str = "", seq: int | None = None) -> str:
    """``prefix[-tag(key)]-<now in base 36>[-<seq>]``, checked against every live venue's rules.

    ``key`` (e.g. the venue) keeps two ids made in the same nanosecond for different targets apart;
    ``seq`` keeps apart ids made by one process in the same nanosecond.
    """
    parts = [prefix]
    if key:
        parts.append(tag(key))
    parts.append(base36(now_ns))
    if seq is not None:
        parts.append(base36(seq))
    cid = "-".join(parts)
    why = invalid_reason(cid)
    if why:
        raise ValueError(f"{why}: shorten the prefix {prefix!r}")
    return cid
