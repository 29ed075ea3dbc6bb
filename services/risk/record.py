"""Where risk decisions go: ``risk:events`` and ``risk_events`` for events, ``risk:control`` for controls
(halts and resumes also to the durable halt set, ``shared.halts``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from shared import halts
from shared.bus import RedisBus
from shared.schemas import RiskControl, RiskEvent, streams
from shared.signing import Signer
from shared.storage import Database
from shared.storage.writer import ns_to_datetime

log = logging.getLogger(__name__)

INSERT = "INSERT INTO risk_events (ts, kind, severity, exchange, symbol, detail) VALUES ($1, $2, $3, $4, $5, $6::jsonb)"


async def store_events(db: Database, events: Sequence[RiskEvent]) -> None:
    """Insert events into ``risk_events`` (one round trip)."""
    rows = [(ns_to_datetime(e.ts), e.kind, e.severity, e.exchange, e.symbol, json.dumps(e.detail)) for e in events]
    async with db.pool.acquire() as conn:
        await conn.executemany(INSERT, rows)


class Recorder:
    """Publish events and controls, and keep every event in PostgreSQL when one is configured.

    Risk's own output, not market data: ingest's ``Recorder`` stores trades and book snapshots.
    """

    def __init__(self, bus: RedisBus, db: Database | None, signer: Signer) -> None:
        self.bus = bus
        self.db = db
        self.signer = signer  # the risk service's key, or the operator's for `tradewind halt/resume`

    async def emit(self, events: Sequence[RiskEvent] = (), controls: Sequence[RiskControl] = ()) -> list[halts.Change]:
        """Publish; return what each control changed in the durable halt set, with its entry id."""
        changes = await halts.send(
            self.bus.redis, controls, signer=self.signer, maxlen=self.bus.settings.maxlen, db=self.db
        )
        if events:
            await self.bus.publish_many([(streams.RISK_EVENTS, e) for e in events])
        if events and self.db is not None:
            await store_events(self.db, events)
        for e in events:
            if e.kind != "heartbeat":
                log.info("risk event %s %s/%s %s", e.kind, e.exchange or "*", e.symbol or "*", e.detail)
        return changes
