"""A Redis that comes up only after a starting service has tried it: the service must wait, not die."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from shared.embedded import EmbeddedRedis


async def start_after_first_try(
    server: EmbeddedRedis, task: asyncio.Task[Any], caplog: pytest.LogCaptureFixture, step: str, timeout: float = 20.0
) -> None:
    """Wait until ``task`` logged that ``step`` lost Redis (failing if the task ended instead), then start ``server``.
    The caller sets ``caplog`` to capture WARNING from ``shared.bus``."""
    deadline = time.monotonic() + timeout
    while not any(f"{step}: lost Redis" in r.getMessage() for r in caplog.records):
        assert not task.done(), task.exception() if not task.cancelled() else "cancelled"
        assert time.monotonic() < deadline, f"{step} never tried Redis"
        await asyncio.sleep(0.01)
    await asyncio.to_thread(server.start)
