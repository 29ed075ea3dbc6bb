"""`tradewind normalize`: a capture -> normalized messages as JSON lines.

The capture is fed through the venue's production ``Feed`` (the code the connectors run), in
recorded order; REST snapshots recorded in the capture are handed to it where the venue needs
them. Messages go to stdout one JSON object per line (DESIGN.md field names, ``type`` =
``trade`` / ``book`` / ``status``); every frame that cannot be used is reported on stderr with
its file and line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from services.ingest.capture import Session, load_session
from services.ingest.feed import FrameErrors, Sink, SymbolMap
from services.ingest.venues import get
from services.ingest.venues.base import Venue
from shared.schemas import BookUpdate, Status, Trade, to_json


class JsonLinesSink:
    """Write each message as one JSON line."""

    def __init__(self, out: IO[bytes]) -> None:
        self._write = out.write
        self.count = 0

    def _emit(self, msg: Trade | BookUpdate | Status) -> None:
        self._write(to_json(msg) + b"\n")
        self.count += 1

    trade = book = status = _emit


def markets_for(venue: Venue, session: Session, markets_file: Path | None) -> tuple[SymbolMap, str]:
    """The session's own market list, else ``--markets FILE``, else the one shipped with Tradewind."""
    if markets_file is not None:
        return venue.parse_markets(markets_file.read_bytes()), str(markets_file)
    own = venue.session_markets(session)
    if own is not None:
        return own, "the capture's own market list"
    return venue.shipped_markets(), "the market list shipped with Tradewind"


def run_session(
    venue: Venue,
    session: Session,
    symbols: SymbolMap,
    sink: Sink,
    report: Callable[[str, str], None] | None = None,
) -> FrameErrors:
    """Feed every record of ``session`` through the venue's feed, in order."""
    where = {"line": 0, "source": ""}

    def located(kind: str, message: str) -> None:
        if report is not None:
            report(kind, f"{where['source']}:{where['line']}: {message}")

    errors = FrameErrors(venue.exchange, report=located if report else None)
    feed = venue.feed(symbols, sink, errors)
    for record in session.records:
        where["line"], where["source"] = record.line, record.source
        if record.kind == "frame":
            before = (getattr(sink, "count", 0), errors.total)
            feed.on_frame(record.data, record.ts or 0)
            if (getattr(sink, "count", 0), errors.total) == before:
                errors.silent += 1
        elif record.kind == "rest":
            venue_symbol = venue.snapshot_symbol(record)
            if venue_symbol:
                feed.on_snapshot(venue_symbol, record.data, record.ts or 0)
    return errors


def normalize(path: Path, exchange: str | None, markets_file: Path | None, out: IO[bytes], err: IO[str]) -> int:
    """Normalize one capture; return the exit status (0 unless the capture cannot be read)."""
    session = load_session(path, exchange)
    if session.venue is None:
        raise ValueError(f"{path}: cannot tell which exchange recorded this; pass --exchange")
    venue = get(exchange or session.venue)
    symbols, origin = markets_for(venue, session, markets_file)

    def report(kind: str, message: str) -> None:
        err.write(f"{printable(message)}\n")  # a frame's escape sequences never reach the terminal

    sink = JsonLinesSink(out)
    errors = run_session(venue, session, symbols, sink, report)
    ignored = ", ".join(f"{k} x{v}" for k, v in sorted(errors.counts.items()))
    frames = sum(1 for r in session.records if r.kind == "frame")
    err.write(
        f"normalize: {venue.exchange}: {sink.count} messages from {len(session.records)} records"
        f" (symbols from {origin}); {errors.total} unusable frames{': ' + ignored if ignored else ''};"
        f" {errors.silent} frames gave no message (acks, heartbeats, buffered deltas, other streams)\n"
    )
    if frames and sink.count == 0:
        raise NoUsableFrames(f"{path}: none of its {frames} frames gave a {venue.exchange} message")
    if errors.silent > max(10, frames // 2):
        err.write(
            f"normalize: warning: {errors.silent} of {frames} frames gave no message; is {path} another venue's or "
            f"market type's capture (e.g. binance_futures frames read as binance)? pass the right --exchange\n"
        )
    return 0


class NoUsableFrames(ValueError):
    """Not one frame of a capture could be normalized: the wrong venue, or not a capture at all."""


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``): safe to print on a terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main_stdout(path: Path, exchange: str | None, markets_file: Path | None) -> int:
    return normalize(path, exchange, markets_file, sys.stdout.buffer, sys.stderr)
