"""What the replay exchange asks of a venue: the rules it serves a capture by, and its view of a client.

``services.ingest.replay`` (the aiohttp server) drives one ``ReplayRules`` per venue through these
hooks; ``ReplayRules`` itself is the default (every frame once the client has sent anything; REST
bodies served by path), and a venue overrides it in ``venues/<venue>/replay.py``. Kept apart from
the server so that venues extend it without importing the server, which imports the venues.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.ingest.capture import Record, Session

if TYPE_CHECKING:  # annotations only: venues.base imports this module to build its default rules
    from services.ingest.venues.base import Venue


@dataclass
class Client:
    """One websocket connection to the replay exchange."""

    number: int
    path: str
    query: dict[str, str]
    subscriptions: set[str] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0
    position_ns: int = 0  # recorded time reached by this client's replay
    state: dict[str, Any] = field(default_factory=dict)  # venue rules keep their per-client state here
    # Held while a reply or a recorded frame is sent: a reply that is a book snapshot must reach
    # the client before every frame the replay passes after it was computed.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ReplayRules:
    """Default venue behaviour: stream every recorded frame once the client has sent its first frame."""

    def __init__(self, venue: Venue, sessions: Sequence[Session]) -> None:
        self.venue = venue
        self.sessions = list(sessions)
        self.timeline = timeline(self.sessions)
        self.frames = [r for r in self.timeline if r.kind == "frame"]
        self.rest_records = [r for r in self.timeline if r.kind == "rest"]
        self.clients_sent_first = any(r.kind == "sent" for r in self.timeline)

    def new_client(self, client: Client) -> None:
        if not self.clients_sent_first:
            client.ready.set()

    def on_client_frame(self, client: Client, text: str) -> list[str]:
        """Replies to a frame the client sent (subscriptions, pings)."""
        client.ready.set()
        return []

    def wants(self, client: Client, record: Record) -> bool:
        return True

    def observe(self, client: Client, record: Record) -> None:
        """Called for every record the client's replay passes (sent or not): venue state keeping."""

    def render(self, client: Client, record: Record) -> str:
        """The text sent for a recorded frame: verbatim, unless the venue numbers frames per
        connection (Bitfinex), where it is renumbered for what this client subscribed to."""
        return record.data

    def rest(self, path: str, query: dict[str, str], client: Client | None) -> tuple[int, str]:
        """Answer a REST request: the recorded response to the same path, latest before the client's position."""
        position = client.position_ns if client else 0
        best = None
        for record in self.rest_records:
            same = record.url.split("?", 1)[0].endswith(path) and all(
                f"{k}={v}" in record.url for k, v in query.items()
            )
            if same and (best is None or (record.ts or 0) <= position):
                best = record
        if best is None:
            return 404, '{"error":"not recorded in this capture"}'
        return 200, best.data


def timeline(sessions: Sequence[Session]) -> list[Record]:
    """All sessions' records one after the other, each session's times shifted to follow the last."""
    out: list[Record] = []
    offset = 0
    for session in sessions:
        stamps = [r.ts for r in session.records if r.ts is not None]
        start = min(stamps) if stamps else 0
        for r in session.records:
            ts = None if r.ts is None else r.ts - start + offset
            out.append(Record(r.kind, r.data, ts, r.url, r.line, r.source, r.conn))
        offset += (max(stamps) - start if stamps else 0) + 1_000_000_000
    return out
