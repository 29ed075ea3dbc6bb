"""What `tradewind streams` shows: per stream length, rate, last entry age; per group pending and lag.

Redis 6.2 has no ``lag`` field in XINFO GROUPS, so lag is counted: the entries after the group's
last-delivered id, read in pages up to ``lag_cap`` (a larger lag shows as "≥cap"). On Redis 7
the server's own ``lag`` is used. On a Redis Cluster the streams of every primary are shown.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis
from rich.table import Table

from shared.bus import entry_key
from shared.schemas import streams


@dataclass
class GroupInfo:
    name: str
    consumers: int
    pending: int
    oldest_pending_idle_ms: int | None
    lag: int
    lag_capped: bool
    last_delivered_id: str


@dataclass
class StreamInfo:
    name: str
    length: int
    last_id: str
    last_entry_age_s: float | None
    entries_per_s: float | None = None
    msgs_per_s: float | None = None
    entries_written: int | None = None
    msgs_written: int | None = None
    groups: list[GroupInfo] = field(default_factory=list)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


async def stream_names(redis: Redis) -> list[str]:
    names = [_s(k) async for k in redis.scan_iter(match="*", _type="stream", count=1000)]
    return sorted(names)


async def _count_after(redis: Redis, stream: str, after: str, cap: int) -> tuple[int, bool]:
    count, cursor, page = 0, after, 1000
    while count < cap:
        rows = await redis.xrange(stream, min=f"({cursor}", max="+", count=min(page, cap - count))
        if not rows:
            return count, False
        count += len(rows)
        cursor = _s(rows[-1][0])
    more = await redis.xrange(stream, min=f"({cursor}", max="+", count=1)
    return count, bool(more)


async def group_info(
    redis: Redis, stream: str, raw: dict[Any, Any], length: int, first_id: str | None, lag_cap: int
) -> GroupInfo:
    g = {_s(k): v for k, v in raw.items()}
    name = _s(g["name"])
    last = _s(g["last-delivered-id"])
    pending = int(g["pending"])
    idle = None
    if pending:
        oldest = await redis.xpending_range(stream, name, min="-", max="+", count=1)
        idle = int(oldest[0]["time_since_delivered"]) if oldest else None
    capped = False
    if g.get("lag") is not None:  # Redis >= 7 computes it
        lag = int(g["lag"])
    elif last == "0-0" or first_id is None or entry_key(last) < entry_key(first_id):
        lag = length  # nothing delivered yet, or everything delivered was trimmed away
    else:
        lag, capped = await _count_after(redis, stream, last, lag_cap)
    return GroupInfo(name, int(g["consumers"]), pending, idle, lag, capped, last)


async def sample(redis: Redis, lag_cap: int = 10_000) -> dict[str, StreamInfo]:
    """One reading of every stream in the database."""
    now_ms = int(float(".".join(_s(x) for x in await redis.time())) * 1000)
    names = await stream_names(redis)
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(streams.stats_key(name))
    counters = await pipe.execute() if names else []
    out: dict[str, StreamInfo] = {}
    for name, raw_stats in zip(names, counters, strict=True):
        stats = {_s(k): int(v) for k, v in raw_stats.items()}
        info = {_s(k): v for k, v in (await redis.xinfo_stream(name)).items()}
        length = int(info["length"])
        last_id = _s(info["last-generated-id"])
        first = info.get("first-entry")
        first_id = _s(first[0]) if first else None
        age = (now_ms - _ms(last_id)) / 1000 if last_id != "0-0" else None
        s = StreamInfo(
            name, length, last_id, age,
            entries_written=stats.get("entries"), msgs_written=stats.get("msgs"),
        )  # fmt: skip
        for raw in await redis.xinfo_groups(name):
            s.groups.append(await group_info(redis, name, raw, length, first_id, lag_cap))
        out[name] = s
    return out


async def report(
    redis: Redis,
    interval: float = 1.0,
    previous: dict[str, StreamInfo] | None = None,
    previous_at: float | None = None,
    lag_cap: int = 10_000,
) -> tuple[dict[str, StreamInfo], float]:
    """A reading with rates over ``interval`` (or since ``previous``); returns it and its time."""
    if previous is None or previous_at is None:
        previous, previous_at = await sample(redis, lag_cap), time.monotonic()
        await asyncio.sleep(interval)
    current, now = await sample(redis, lag_cap), time.monotonic()
    dt = max(now - previous_at, 1e-9)
    for name, s in current.items():
        before = previous.get(name)
        if before is None:
            continue
        if s.entries_written is not None and before.entries_written is not None:
            s.entries_per_s = (s.entries_written - before.entries_written) / dt
            s.msgs_per_s = ((s.msgs_written or 0) - (before.msgs_written or 0)) / dt
        else:  # written by a tool that keeps no counters; exact while untrimmed
            s.entries_per_s = max(s.length - before.length, 0) / dt
    return current, now


def as_json(infos: dict[str, StreamInfo]) -> list[dict[str, Any]]:
    return [asdict(s) for s in infos.values()]


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def render(infos: dict[str, StreamInfo]) -> Table:
    table = Table(title="Tradewind streams", title_justify="left")
    for col, justify in [("stream", "left"), ("length", "right"), ("entries/s", "right"), ("msgs/s", "right"),
                         ("last entry", "right"), ("group", "left"), ("consumers", "right"), ("pending", "right"),
                         ("oldest pending", "right"), ("lag", "right")]:  # fmt: skip
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    if not infos:
        table.add_row("(no streams yet)", *[""] * 9)
    for s in infos.values():
        age = "-" if s.last_entry_age_s is None else f"{s.last_entry_age_s:,.1f}s ago"
        head = [s.name, f"{s.length:,}", _rate(s.entries_per_s), _rate(s.msgs_per_s), age]
        if not s.groups:
            table.add_row(*head, "-", "", "", "", "")
        for i, g in enumerate(s.groups):
            idle = "-" if g.oldest_pending_idle_ms is None else f"{g.oldest_pending_idle_ms / 1000:,.1f}s"
            lag = f"≥{g.lag:,}" if g.lag_capped else f"{g.lag:,}"
            cells = head if i == 0 else [""] * 5
            table.add_row(*cells, g.name, str(g.consumers), f"{g.pending:,}", idle, lag)
    return table
