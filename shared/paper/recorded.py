"""Read a recorded Binance combined-stream capture into normalized messages for the paper exchange.

Lines are ``<recv_ns> <json>`` (hftbacktest's collector). Depth diffs seen before the REST
snapshot are dropped, the snapshot becomes a ``snapshot=True`` update, and later diffs follow
Binance's sequence rule (each diff's ``U`` is the previous ``u`` + 1); a gap raises, naming the line.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import msgspec

from shared.schemas import BookUpdate, Trade


class _Diff(msgspec.Struct):
    E: int
    U: int
    u: int
    b: list[tuple[float, float]]
    a: list[tuple[float, float]]


class _Trade(msgspec.Struct):
    T: int
    t: int
    p: float
    q: float
    m: bool  # buyer is maker → the taker sold


class _Snapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


class _Envelope(msgspec.Struct):
    stream: str
    data: msgspec.Raw


_envelope = msgspec.json.Decoder(_Envelope)
_diff = msgspec.json.Decoder(_Diff, strict=False)
_trade = msgspec.json.Decoder(_Trade, strict=False)
_snap = msgspec.json.Decoder(_Snapshot, strict=False)


def read_binance_capture(
    path: Path, exchange: str = "binance", symbol: str = "BTC/USDT"
) -> Iterator[BookUpdate | Trade]:
    """Yield the capture's book updates (from the snapshot on) and trades, in receive order."""
    last_u: int | None = None
    early: list[tuple[int, _Diff]] = []  # diffs received before the snapshot, replayed after it
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        for lineno, line in enumerate(f, 1):
            recv, _, body = line.partition(" ")
            recv_ns = int(recv)
            if body.startswith('{"lastUpdateId"'):
                snap = _snap.decode(body)
                last_u = snap.lastUpdateId
                yield BookUpdate(exchange, symbol, last_u, recv_ns, recv_ns, snap.bids, snap.asks, snapshot=True)
                for _, d in early:
                    if d.u > last_u:
                        last_u = d.u
                        yield BookUpdate(exchange, symbol, d.u, d.E * 1_000_000, recv_ns, d.b, d.a)
                continue
            env = _envelope.decode(body)
            if "@depth" in env.stream:
                d = _diff.decode(env.data)
                if last_u is None:
                    early.append((recv_ns, d))
                    continue
                if d.u <= last_u:
                    continue
                if last_u + 1 < d.U:
                    raise ValueError(f"{path}:{lineno}: depth gap, U={d.U} after u={last_u}")
                last_u = d.u
                yield BookUpdate(exchange, symbol, d.u, d.E * 1_000_000, recv_ns, d.b, d.a)
            elif env.stream.endswith("@trade"):
                t = _trade.decode(env.data)
                yield Trade(exchange, symbol, str(t.t), t.p, t.q, "sell" if t.m else "buy", t.T * 1_000_000, recv_ns)
