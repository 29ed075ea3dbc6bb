"""The strategy side of the chaos run: decisions published on orders:intents, and the market data feed.

Each decision has its own client order id and is logged (one JSON line) the moment it is made; its
intent is then published until Redis takes it (the same id every try: a retry is not a new decision).
Market data comes from here, not from ingest: snapshots of the fake venue's own book on md:book:binance,
so the executor's guard and the risk service see the prices the venue fills at.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from shared.bus import connect_redis
from shared.schemas import BookUpdate, OrderIntent, encode, streams

VENUE, SYMBOL = "binance", "BTC/USDT"


@dataclass
class Decision:
    n: int
    client_order_id: str
    side: str
    order_type: str
    amount: float
    price: float | None
    ts_ns: int


class Driver:
    def __init__(self, redis_url: str, tag: str, log_path: Path, book: dict[str, list[tuple[str, str]]]) -> None:
        self.redis = connect_redis(redis_url)
        self.tag = tag
        self.log_path = log_path
        self.book = book
        self.decisions: list[Decision] = []
        self.publish_retries = 0
        self._feeding = True

    def best(self, side: str) -> float:
        return float(self.book["bids" if side == "bid" else "asks"][0][0])

    async def decide(self, resting: bool = False) -> Decision:
        """Make the next decision: a market order of 0.001 BTC, alternately buy and sell, or (``resting``)
        a limit buy 0.5% under the best bid that rests at the venue."""
        n = len(self.decisions)
        side = "buy" if resting or n % 2 == 0 else "sell"
        price = round(self.best("bid") * 0.995, 2) if resting else None
        d = Decision(n, f"chaos{self.tag}n{n}", side, "limit" if resting else "market", 0.001, price, time.time_ns())
        self.decisions.append(d)
        with self.log_path.open("a") as f:
            f.write(json.dumps(asdict(d)) + "\n")
        intent = OrderIntent(d.client_order_id, VENUE, SYMBOL, side, d.order_type, d.amount, d.ts_ns, price=price)  # type: ignore[arg-type]
        await self._publish(streams.ORDERS_INTENTS, encode(intent))
        return d

    async def _publish(self, stream: str, payload: bytes, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.redis.xadd(stream, {streams.FIELD: payload}, maxlen=1_000_000, approximate=True)
                return
            except (RedisError, OSError):
                self.publish_retries += 1
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.1)  # Redis is down: try again (same id, same decision)

    async def feed(self, period_s: float = 0.25) -> None:
        """Publish the venue's book every ``period_s`` until ``stop_feed``; a failed publish is skipped."""
        seq = 0
        while self._feeding:
            seq += 1
            now = time.time_ns()
            bids = [(float(p), float(q)) for p, q in self.book["bids"]]
            asks = [(float(p), float(q)) for p, q in self.book["asks"]]
            book = BookUpdate(VENUE, SYMBOL, seq, now, now, bids, asks, snapshot=True)
            with contextlib.suppress(RedisError, OSError):  # Redis is down: the next tick tries again
                await self.redis.xadd(streams.md_book(VENUE), {streams.FIELD: encode(book)}, maxlen=10_000)
            await asyncio.sleep(period_s)  # the feed's rate, not a wait for a condition

    def stop_feed(self) -> None:
        self._feeding = False

    def by_id(self) -> dict[str, Decision]:
        return {d.client_order_id: d for d in self.decisions}

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for d in self.decisions:
            kinds[d.order_type] = kinds.get(d.order_type, 0) + 1
        return {"decisions": len(self.decisions), "by_type": kinds, "publish_retries": self.publish_retries}

    async def close(self) -> None:
        await self.redis.aclose()
