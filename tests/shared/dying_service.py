"""A service process whose publisher's writer task dies of a bug, for the "no silent stalls" test.

python dying_service.py VAR_DIR  -> should exit 1 at once, the error logged
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from redis.exceptions import RedisError

from shared.bus import RedisBus
from shared.config import BusSettings, Settings
from shared.publisher import Publisher
from shared.runtime import ServiceTasks, run_service
from shared.schemas import Trade


class BrokenBus(RedisBus):
    """Fails the way no retry can help: a bug, not a Redis error."""

    async def send_encoded(self, entries: Sequence[tuple[str, bytes, int]]) -> list[str | RedisError]:
        raise RuntimeError("a bug in the writer")

    async def publish_encoded(self, entries: Sequence[tuple[str, bytes, int]]) -> list[str]:
        raise RuntimeError("a bug in the writer")


async def main(settings: Settings) -> None:
    publisher = Publisher(BrokenBus(None, BusSettings()))  # type: ignore[arg-type]
    tasks = ServiceTasks("dying")
    tasks.adopt(publisher.start())
    publisher.put_nowait("s", Trade("x", "A/B", "1", 1.0, 1.0, "buy", 1, 1))
    await tasks.until(asyncio.Event().wait())  # "runs until stopped": only a dead task ends it


if __name__ == "__main__":
    raise SystemExit(run_service("dying", main, Settings(var_dir=Path(sys.argv[1]))))
