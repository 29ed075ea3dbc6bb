"""The records every capture format is read into, and the one way capture files are opened.

Apart from ``capture.py`` so that a format's reader (``l3log.py``) and the format detection in
``capture.py`` can both use them without importing each other.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

RecordKind = Literal["config", "open", "sent", "rest", "frame"]


class CaptureError(Exception):
    """A capture cannot be read at all (missing, unreadable, not text)."""


@dataclass(slots=True)
class Record:
    kind: RecordKind
    data: str  # payload, body or configuration JSON
    ts: int | None = None  # local receive time, ns UTC; None for plain lines
    url: str = ""
    line: int = 0  # 1-based line in ``source``
    source: str = ""
    conn: int = 0  # which websocket connection of the session (one per ws file)


@dataclass
class Session:
    """One recording run of one venue, records merged in time order."""

    venue: str | None
    path: Path
    records: list[Record] = field(default_factory=list)

    def rest(self, contains: str) -> list[Record]:
        """REST records whose URL contains ``contains`` (e.g. ``exchangeInfo``)."""
        return [r for r in self.records if r.kind == "rest" and contains in r.url]

    def frames(self) -> Iterator[Record]:
        return (r for r in self.records if r.kind == "frame")

    def duration_ns(self) -> int:
        stamps = [r.ts for r in self.records if r.ts is not None]
        return (max(stamps) - min(stamps)) if stamps else 0


def open_text(path: Path) -> Iterator[str]:
    """Yield the lines of a text file, gunzipping it when it is gzip (by content, not by name)."""
    try:
        with open(path, "rb") as probe:
            gz = probe.read(2) == b"\x1f\x8b"
        opener = gzip.open if gz else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            yield from fh
    except (OSError, EOFError) as exc:
        raise CaptureError(f"{path}: cannot read ({exc})") from None
