"""A consumer process for the crash test: applies each trade to an idempotent Redis sink, then acks.

python bus_worker.py REDIS_URL STREAM GROUP NAME SINK [SLEEP_PER_BATCH_S] [HOLD_AFTER]

With HOLD_AFTER, once the sink holds that many effects the worker keeps its batch unacked (until killed).
"""

from __future__ import annotations

import asyncio
import sys

from shared.bus import Consumer, Delivery, connect_redis
from shared.config import BusSettings


async def main(url: str, stream: str, group: str, name: str, sink: str, pause: float, hold_after: int) -> None:
    redis = connect_redis(url)

    async def apply(batch: list[Delivery]) -> None:
        ids = [m.trade_id for d in batch for m in d.messages]  # type: ignore[union-attr]
        pipe = redis.pipeline(transaction=True)
        pipe.sadd(sink, *ids)  # the effect: idempotent by trade id
        pipe.incrby(f"{sink}:attempts", len(ids))
        await pipe.execute()
        await asyncio.sleep(pause)
        if hold_after and await redis.scard(sink) >= hold_after:
            await asyncio.Event().wait()  # die holding this batch: the test kills us here

    settings = BusSettings(batch_size=200, block_ms=50, claim_idle_ms=400, claim_interval_ms=100)
    consumer = Consumer(redis, [stream], group, apply, settings, name=name)
    await consumer.run()


if __name__ == "__main__":
    url, stream, group, name, sink = sys.argv[1:6]
    pause = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    hold_after = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    asyncio.run(main(url, stream, group, name, sink, pause, hold_after))
