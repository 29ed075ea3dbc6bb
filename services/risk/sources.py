"""What `tradewind risk simulate --data` reads: normalized JSON lines or raw captures, several merged.

A file whose first non-empty line is a normalized ``trade``/``book``/``status`` object is read as
`tradewind normalize` output; a CSV of 1-minute bars (``timestamp,open,high,low,close,volume``)
as interpolated candles (``services.risk.candles``); anything else (a cryptofeed session, an hftbacktest feed, a plain
capture, Bitstamp's 2015 L3 log; a file or a folder of them) is found and normalized exactly as
`tradewind replay-server` and `tradewind normalize` do, through the venue's production feed.
Every source's messages are merged into one receive-time order.

A raw capture goes through `tradewind normalize` in a child process: the simulation reads what the
product records, through the ingest service's own code, without importing it.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from services.risk.candles import is_candles, load_candles
from services.risk.replay import DataError, MarketMessage, load_messages
from services.risk.simulate import merge
from shared.schemas import BookUpdate, Trade


def is_normalized(path: Path) -> bool:
    """Does ``path`` hold normalized JSON lines (its first non-empty line says)?"""
    if not path.is_file():
        return False
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", errors="replace") as f:
            first = next((line for line in f if line.strip()), "")
    except (OSError, EOFError):
        return False
    with contextlib.suppress(ValueError):
        obj = json.loads(first)
        return isinstance(obj, dict) and obj.get("type") in ("trade", "book", "status") and "exchange" in obj
    return False


def load_capture(path: Path, exchange: str | None = None) -> list[MarketMessage]:
    """Normalize the raw capture at ``path`` (a file or a folder) and read it, in receive order.

    It goes through `tradewind normalize`, in a child process: the ingest service's own reader and
    the venue's production feed, met at the boundary every service shares (normalized messages),
    so the risk service never imports ingest's code."""
    cmd = [sys.executable, "-m", "shared", "normalize", str(path), *(["--exchange", exchange] if exchange else [])]
    with tempfile.TemporaryDirectory(prefix="tw-simulate-") as tmp:
        out = Path(tmp) / "normalized.jsonl"
        with out.open("wb") as sink:
            done = subprocess.run(cmd, stdout=sink, stderr=subprocess.PIPE, check=False)
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            raise DataError(
                f"{path}: not a readable capture or normalized lines ({said[-1] if said else done.returncode})"
            )
        messages = [m for m in load_messages(out) if isinstance(m, Trade | BookUpdate)]
    if not messages:
        raise DataError(f"{path}: no trade or book message in the capture (is it another venue's? pass --exchange)")
    if not any(m.recv_ts for m in messages):
        raise DataError(f"{path}: the capture has no receive times; the simulation needs a clock")
    return messages


def load_sources(paths: Sequence[Path], exchange: str | None = None) -> list[MarketMessage]:
    """Every path's messages (normalized lines, raw captures, 1-minute candles), merged by receive time."""
    parts = []
    for p in paths:
        if is_normalized(p):
            parts.append(load_messages(p))
        elif is_candles(p):
            parts.append(load_candles(p, exchange or "candles"))
        else:
            parts.append(load_capture(p, exchange))
    return merge(parts)
