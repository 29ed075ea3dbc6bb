"""What the rest of ingest needs from a venue, in one small interface.

The ingest service, `tradewind normalize`, `tradewind capture` and the replay exchange never
import a venue's modules directly: they ask ``services.ingest.venues.get(name)`` for its
``Venue`` and use only the methods below. See ``README.md`` beside this file for adding one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.ingest.capture import Record, Session
from services.ingest.connector import Connector
from services.ingest.feed import Feed, FrameErrors, Sink, SymbolMap
from services.ingest.replay_rules import ReplayRules
from shared.sections.ingest import IngestSettings, VenueSettings


class Venue:
    """Base of every venue's adapter; subclasses fill in the ``NotImplementedError`` hooks."""

    exchange: str = ""
    markets_path: str = ""  # REST path of the market list, appended to base_url_http

    # -- symbols -------------------------------------------------------------------------------

    def parse_markets(self, body: bytes | str) -> SymbolMap:
        """Symbol map from the body of the venue's market-list response."""
        raise NotImplementedError

    def shipped_markets(self) -> SymbolMap:
        """The market list shipped with Tradewind (offline fallback)."""
        raise NotImplementedError

    def session_markets(self, session: Session) -> SymbolMap | None:
        """The market list a capture recorded at start-up, if it did."""
        for record in session.rest(self.markets_path.rsplit("/", 1)[-1] or "\0"):
            try:
                return self.parse_markets(record.data)
            except ValueError:
                continue
        return None

    async def fetch_markets(self, http: Any, base_url_http: str) -> tuple[SymbolMap, bytes]:
        """GET the venue's market list; returns the map and the raw body (captures record it)."""
        url = base_url_http.rstrip("/") + self.markets_path
        async with http.get(url) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise ValueError(f"{self.exchange}: GET {url} answered HTTP {resp.status}: {body[:200]!r}")
        return self.parse_markets(body), body

    # -- parsing and connecting ----------------------------------------------------------------

    def feed(self, symbols: SymbolMap, sink: Sink, errors: FrameErrors | None = None, **kwargs: Any) -> Feed:
        raise NotImplementedError

    def connectors(
        self,
        venue: VenueSettings,
        settings: IngestSettings,
        sink: Sink,
        symbols: SymbolMap,
        **kwargs: Any,
    ) -> list[Connector]:
        """Connectors (one per connection) covering ``venue.symbols`` within the venue's limits."""
        raise NotImplementedError

    def snapshot_symbol(self, record: Record) -> str | None:
        """The venue symbol a recorded REST response is a book snapshot of (None: not one)."""
        return None

    # -- captures ------------------------------------------------------------------------------

    def replay_rules(self, sessions: Sequence[Session]) -> ReplayRules:
        """How the replay exchange serves this venue's captures (subscriptions, REST)."""
        return ReplayRules(self, sessions)

    def capture_settings(self, sessions: Sequence[Session], base: VenueSettings) -> VenueSettings:
        """Venue settings that subscribe to what ``sessions`` recorded (for replay mode and tests)."""
        return base
