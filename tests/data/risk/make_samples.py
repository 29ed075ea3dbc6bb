"""Build the risk tests' replay samples from the shared captures (see README.md here).

Each capture goes through Tradewind's own normalizer (``services.ingest.normalize``), then is
thinned so the sample stays small: every trade is kept; the L2 book is rebuilt from the
normalized snapshot + deltas and written as a top-``--levels`` snapshot at most every
``--every-ms`` of receive time. Output: normalized JSON lines (``tradewind normalize``'s format), gzip.
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

import msgspec

from services.ingest.normalize import normalize
from shared.schemas import BookUpdate, Trade, to_json
from shared.schemas.messages import Status

_decoder = msgspec.json.Decoder(Trade | BookUpdate | Status)


def thin(capture: Path, exchange: str | None, levels: int, every_ms: int) -> list[bytes]:
    raw = io.BytesIO()
    err = io.StringIO()
    normalize(capture, exchange, None, raw, err)
    books: dict[tuple[str, str], tuple[dict[float, float], dict[float, float]]] = {}
    last_out: dict[tuple[str, str], int] = {}
    out: list[bytes] = []
    for line in raw.getvalue().splitlines():
        msg = _decoder.decode(line)
        if isinstance(msg, Trade):
            out.append(line)
            continue
        if not isinstance(msg, BookUpdate):
            continue
        key = (msg.exchange, msg.symbol)
        if msg.snapshot or key not in books:
            books[key] = ({}, {})
        bids, asks = books[key]
        for side, levels_in in ((bids, msg.bids), (asks, msg.asks)):
            for price, amount in levels_in:
                if amount == 0:
                    side.pop(price, None)
                else:
                    side[price] = amount
        if msg.recv_ts - last_out.get(key, 0) < every_ms * 1_000_000:
            continue
        last_out[key] = msg.recv_ts
        top_b = sorted(bids.items(), reverse=True)[:levels]
        top_a = sorted(asks.items())[:levels]
        snap = BookUpdate(msg.exchange, msg.symbol, msg.seq, msg.ts, msg.recv_ts, top_b, top_a, snapshot=True)
        out.append(to_json(snap))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("captures", type=Path, nargs="+")
    parser.add_argument("--levels", type=int, default=10)
    parser.add_argument("--every-ms", type=int, default=250)
    args = parser.parse_args()
    lines: list[tuple[int, bytes]] = []
    for capture in args.captures:
        for line in thin(capture, None, args.levels, args.every_ms):
            lines.append((msgspec.json.decode(line)["recv_ts"], line))
    lines.sort(key=lambda x: x[0])  # stable: merged sessions interleave in receive order
    with gzip.open(args.out, "wb", compresslevel=9) as f:
        for _, line in lines:
            f.write(line + b"\n")


if __name__ == "__main__":
    main()
