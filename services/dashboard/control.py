"""Halt and resume from the dashboard: the same signed path as `tradewind halt/resume`.

The control is signed with the operator key (configured, else the one `tradewind up` generated for
the var dir) and published through ``shared.halts.send`` with its durable-halt change, on the
operator's Redis connection (the dashboard's own Redis user is read-only), then recorded as a risk
event on ``risk:events`` and in ``risk_events``. Only a request that carries the operator token in
its body (never its URL) and passes the CSRF check gets here.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from shared import halts
from shared.bus import RedisBus, connect_redis
from shared.config import Settings
from shared.schemas import RiskControl, RiskEvent, streams
from shared.signing import OPERATOR, Signer, with_stack_keys
from shared.storage import Database
from shared.storage.writer import ns_to_datetime

INSERT = "INSERT INTO risk_events (ts, kind, severity, exchange, symbol, detail) VALUES ($1, $2, $3, $4, $5, $6::jsonb)"


def operator_redis_url(settings: Settings) -> str | None:
    """The operator's Redis URL: the running stack's (``<var_dir>/run/redis.url``), else REDIS_URL."""
    path = settings.var_dir / "run" / "redis.url"
    return path.read_text().strip() if path.exists() else settings.redis_url


class Controls:
    """Sends halts and resumes as the operator."""

    def __init__(self, settings: Settings, db: Database | None) -> None:
        self.settings = settings
        self.db = db

    async def send(self, action: str, reason: str, exchange: str | None, issued_by: str) -> dict[str, Any]:
        """Publish the control; wait (``dashboard.control_wait_s``) until the consumer groups of risk:control
        handled it; return the halts in force afterwards and who confirmed (``confirmed_by``), refused
        (``refused_by``) or did not answer (``not_confirmed``), as `tradewind halt` does."""
        signer = Signer.of(with_stack_keys(self.settings.control, self.settings.var_dir), OPERATOR)
        now = time.time_ns()
        control = RiskControl(
            action,  # type: ignore[arg-type]
            now,
            reason=reason,
            exchange=exchange,
            issued_by=issued_by,
            cause=halts.HUMAN,
        )
        detail: dict[str, float | int | str | bool | None] = {
            "reason": reason,
            "issued_by": issued_by,
            "cause": halts.HUMAN,
            "force": False,
        }
        event = RiskEvent(action, now, "critical" if action == "halt" else "info", exchange, None, detail)
        url = operator_redis_url(self.settings)
        if url is None:
            raise RuntimeError("no Redis URL for controls: REDIS_URL is not set and no running `tradewind up` found")
        redis: Redis = connect_redis(url, cluster=self.settings.bus.cluster)
        try:
            [change] = await halts.send(redis, [control], signer=signer, maxlen=self.settings.bus.maxlen, db=self.db)
            await RedisBus(redis, self.settings.bus).publish(streams.RISK_EVENTS, event)
            if self.db is not None:
                await self.db.execute(
                    INSERT, ns_to_datetime(now), action, event.severity, exchange, None, json.dumps(detail)
                )
            confirmed = await halts.confirmations(redis, change.entry_id, self.settings.dashboard.control_wait_s)
            return {"halts": halts.describe(await halts.load(redis, self.db)), **confirmed.as_dict()}
        finally:
            await redis.aclose()
