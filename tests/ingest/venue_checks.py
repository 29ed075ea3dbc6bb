"""Checks shared by the per-venue recorded-session tests (Coinbase, Kraken, OKX, Bybit, Bitstamp,
Bitfinex, Gemini): each test supplies an independent rebuild of the books from the raw frames,
written plainly in the test, sharing no code with ``services.ingest``."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from shared.cli import cli
from shared.schemas import BookUpdate, Trade, streams
from tests.ingest.helpers import Run, book_from_messages, replay_through_connector, statuses, trade_key

Book = tuple[dict[float, float], dict[float, float]]
_CF_FRAME = re.compile(r"^(\d+\.\d+): (.*)$")


def normalized(exchange: str, path: Path) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["normalize", "--exchange", exchange, str(path)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def raw_frames(path: Path) -> Iterator[str]:
    """Every received frame of a capture (a cryptofeed session folder or a plain file), in time order."""
    files = sorted(f for f in path.iterdir() if ".ws." in f.name) if path.is_dir() else [path]
    timed: list[tuple[float, int, str]] = []
    for f in files:
        with gzip.open(f, "rt") as fh:
            lines = fh.read().splitlines()
        for n, line in enumerate(lines):
            line = line.rstrip("\n")
            m = _CF_FRAME.match(line)
            if m:
                timed.append((float(m.group(1)), n, m.group(2)))
            elif line.startswith(("{", "[")):
                timed.append((0.0, n, line))
    timed.sort(key=lambda t: (t[0], t[1]))
    return (payload for _, _, payload in timed)


def set_levels(side: dict[float, float], levels: Any) -> None:
    for price, amount in levels:
        if float(amount):
            side[float(price)] = float(amount)
        else:
            side.pop(float(price), None)


async def check_recorded_session(
    redis: Any, exchange: str, path: Path, rebuilt: dict[str, Book], *, min_trades: int = 1
) -> Run:
    """Replay ``path`` through the connector: trades == normalize, books == ``rebuilt`` (by venue symbol)."""
    run = await replay_through_connector(redis, exchange, path)
    trades = run.of(streams.md_trades(exchange), Trade)
    books = run.of(streams.md_book(exchange), BookUpdate)
    expected = normalized(exchange, path)
    published = [trade_key(t) for t in trades]
    assert published == [trade_key(m) for m in expected if m["type"] == "trade"], published[:3]
    assert len(trades) >= min_trades
    assert all("/" in t.symbol for t in trades)
    assert not [s for s in statuses(run) if s.state == "gap"]
    assert rebuilt, "the capture has books"
    feed = run.connectors[0].feed
    for venue_symbol, (bids, asks) in rebuilt.items():
        symbol = feed.symbols.unified(venue_symbol)
        assert symbol is not None, venue_symbol
        own = feed.books[symbol]
        assert own.bids == bids and own.asks == asks, f"{symbol}: connector's book differs from the rebuild"
        assert book_from_messages(books, symbol) == (bids, asks), f"{symbol}: md:book does not rebuild the book"
        assert next(b for b in books if b.symbol == symbol).snapshot
    assert sum(c.feed.errors.total for c in run.connectors) == 0, [c.feed.errors.counts for c in run.connectors]
    for venue_symbol in rebuilt:  # as many book messages per symbol as the normalizer makes
        symbol = feed.symbols.unified(venue_symbol)
        normalized_books = [m for m in expected if m["type"] == "book" and m["symbol"] == symbol]
        assert len(normalized_books) == len([b for b in books if b.symbol == symbol]), symbol
    return run


def copy_with_one_frame_changed(
    src: Path, dst: Path, pick: Callable[[str], bool], change: Callable[[str], str | None], nth: int = 1
) -> str:
    """Copy a capture changing the ``nth`` frame that ``pick`` selects (``change`` -> None deletes it)."""
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(src.iterdir()) if src.is_dir() else [src]
    changed = ""
    seen = 0
    for f in files:
        if f.suffix != ".gz":
            continue
        if ".ws." not in f.name and src.is_dir():
            shutil.copy(f, dst / f.name)
            continue
        out = []
        with gzip.open(f, "rt") as fh:
            lines = fh.readlines()
        for line in lines:
            m = _CF_FRAME.match(line.rstrip("\n"))
            payload = m.group(2) if m else line.rstrip("\n")
            if not changed and pick(payload):
                seen += 1
                if seen == nth:
                    changed = payload
                    new = change(payload)
                    if new is None:
                        continue
                    line = f"{m.group(1)}: {new}\n" if m else new + "\n"
            out.append(line)
        with gzip.open(dst / f.name, "wt") as fh:
            fh.writelines(out)
    assert changed, "no frame matched"
    return changed


async def check_gap_and_resync(redis: Any, exchange: str, path: Path, symbol: str) -> Run:
    """Replay a capture with one corrupted/missing frame: gap, resync, nothing published across it."""
    run = await replay_through_connector(redis, exchange, path)
    states = [(s.state, s.symbol) for s in statuses(run) if s.state in ("gap", "resynced")]
    assert states == [("gap", symbol), ("resynced", symbol)], states
    gap_at = next(i for i, s in enumerate(statuses(run)) if s.state == "gap")
    assert statuses(run)[gap_at].detail
    books = [b for b in run.of(streams.md_book(exchange), BookUpdate) if b.symbol == symbol]
    gap_ts = statuses(run)[gap_at].ts
    after_gap = [i for i, b in enumerate(books) if b.snapshot and b.recv_ts > gap_ts]
    assert len(after_gap) == 1, "exactly one resync snapshot after the gap"
    across = [b for b in books[: after_gap[0]] if b.recv_ts > gap_ts]
    assert across == [], "book updates published between the gap and the resync snapshot"
    feed = run.connectors[0].feed
    own = feed.books[symbol]
    # From the resync snapshot on, md:book rebuilds the connector's book.
    assert book_from_messages(books, symbol) == (own.bids, own.asks)
    assert own.bids and own.asks
    return run
