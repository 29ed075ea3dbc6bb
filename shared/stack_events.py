"""What `tradewind up` itself tells the rest of the stack: a service or server its supervisor gave up
on (a crash loop) becomes a ``service_gave_up`` risk event on ``risk:events``, which the alerts
service turns into an alert (the supervisor's console line alone reaches nobody who is away).

Published on the operator's connection, opened per event: give-ups are rare, and the Redis needed
may be the very server given up on; then the supervisor says the report failed and goes on.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from shared.bus import RedisBus, connect_redis
from shared.config import BusSettings
from shared.schemas import RiskEvent, RiskEventKind, streams

GAVE_UP: RiskEventKind = "service_gave_up"


def give_up_event(name: str, why: str, ts: int | None = None) -> RiskEvent:
    return RiskEvent(GAVE_UP, ts or time.time_ns(), "critical", detail={"service": name, "why": why})


def give_up_reporter(redis_url: str, bus: BusSettings) -> Callable[[str, str], Awaitable[None]]:
    """The supervisor's ``on_give_up``: publish the event for ``(name, why)``."""

    async def report(name: str, why: str) -> None:
        redis = connect_redis(redis_url, timeout_s=5.0, cluster=bus.cluster)
        try:
            await RedisBus(redis, bus).publish(streams.RISK_EVENTS, give_up_event(name, why))
        finally:
            await redis.aclose()

    return report
