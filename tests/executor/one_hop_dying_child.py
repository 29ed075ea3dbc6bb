"""The executor as ``python -m services.executor`` runs it, on a venue that kills the process (SIGKILL)
when the first strategy order reaches it: after the one-hop path journaled and claimed the intent,
before the venue received it. Run by tests/executor/test_one_hop.py."""

from __future__ import annotations

import os
import signal

from services.executor import service
from services.executor.gateway import Gateway
from shared.config import Settings
from shared.runtime import run_service
from shared.schemas import OrderIntent

build_gateway = service.build_gateway


def dying_gateway(settings: Settings, run_id: str) -> Gateway:
    gateway = build_gateway(settings, run_id)
    submit = gateway.submit

    async def die_at_the_first_strategy_order(intent: OrderIntent) -> None:
        if intent.strategy and not intent.cancel:
            os.kill(os.getpid(), signal.SIGKILL)
        await submit(intent)

    gateway.submit = die_at_the_first_strategy_order  # type: ignore[method-assign]
    return gateway


service.build_gateway = dying_gateway
raise SystemExit(run_service("executor", service.main))
