"""Shared by the ingest tests: run a capture through the production connector, and an independent
book rebuild from the raw capture that shares no code with ``services.ingest``."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from services.ingest.connector import Connector
from services.ingest.feed import BusSink
from services.ingest.replay import ReplayServer
from services.ingest.venues import get
from shared.bus import RedisBus
from shared.config import BusSettings
from shared.publisher import Publisher
from shared.schemas import AnyMessage, BookUpdate, Status, Trade, decode, streams
from shared.sections.ingest import IngestSettings

DATA = Path(__file__).parent.parent / "data" / "ingest"
SAMPLE = Path(__file__).parent.parent.parent / "services" / "ingest" / "sample"

# One entry per recorded session: (exchange, capture path). Every venue Tradewind supports is here.
SESSIONS = [
    ("binance", DATA / "binance" / "cryptofeed-2021-10-12"),
    ("binance", DATA / "binance" / "cryptofeed-2021-04-17"),
    ("binance", SAMPLE / "binance" / "hftbacktest"),
    ("binance_us", DATA / "binance_us" / "cryptofeed-2021-04-17"),
    ("binance_futures", DATA / "binance_futures" / "cryptofeed-2021-07-22"),
    ("binance_futures", SAMPLE / "binance_futures" / "hftbacktest"),
]


def fast_settings(**overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.5, "snapshot_retry_s": 0.1}
    values.update(overrides)
    return IngestSettings(**values)


@dataclass
class Run:
    server: ReplayServer
    connectors: list[Connector]
    messages: dict[str, list[AnyMessage]] = field(default_factory=dict)

    def of(self, stream: str, kind: type) -> list[Any]:
        return [m for m in self.messages.get(stream, []) if isinstance(m, kind)]


async def read_stream(redis: Any, stream: str) -> list[AnyMessage]:
    out: list[AnyMessage] = []
    for _id, fields in await redis.xrange(stream):
        out.extend(decode(fields[streams.FIELD.encode()]))
    return out


async def clear_streams(redis: Any, exchange: str) -> None:
    await redis.delete(streams.md_trades(exchange), streams.md_book(exchange), streams.MD_STATUS)


async def replay_through_connector(
    redis: Any,
    exchange: str,
    path: Path,
    *,
    speed: float = 0.0,
    settings: IngestSettings | None = None,
    drop_after: int | None = None,
    until_connections: int = 1,
    timeout: float = 60.0,
) -> Run:
    """Serve ``path`` on a local replay exchange, connect the venue's connector, publish to Redis,
    and return once the replay has been played to its end and everything is in Redis."""
    await clear_streams(redis, exchange)
    settings = settings or fast_settings()
    server = ReplayServer.from_path(path, exchange, speed=speed, drop_after=drop_after)
    venue = get(exchange)
    publisher = Publisher(RedisBus(redis, BusSettings()))
    publisher.start()
    sink = BusSink(publisher, exchange)
    async with server, aiohttp.ClientSession() as http:
        venue_settings = server.venue_settings(exchange)
        markets, _ = await venue.fetch_markets(http, venue_settings.base_url_http)
        connectors = venue.connectors(venue_settings, settings, sink, markets, http=http)
        tasks = [asyncio.create_task(c.run()) for c in connectors]
        try:
            deadline = time.monotonic() + timeout
            while True:
                await asyncio.sleep(0.05)
                received = sum(c.feed.frames for c in connectors)
                if server.finished[exchange] >= until_connections and received >= server.frames_sent[exchange]:
                    pending = [t for c in connectors for t in c._snapshot_tasks.values() if not t.done()]
                    if not pending:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"replay of {path} not done in {timeout}s: sent {dict(server.frames_sent)},"
                        f" received {received}, finished {dict(server.finished)}"
                    )
        finally:
            for c in connectors:
                c.stop()
            await asyncio.gather(*tasks)
            await publisher.close()
    run = Run(server, connectors)
    for stream in (streams.md_trades(exchange), streams.md_book(exchange), streams.MD_STATUS):
        run.messages[stream] = await read_stream(redis, stream)
    return run


# -- an independent reading of the raw captures --------------------------------------------------

_CF_FRAME = re.compile(r"^\d+\.\d+: (.*)$")
_CF_REST = re.compile(r"^(\S+) -> (\d+\.\d+): (.*)$")


def raw_lines(path: Path) -> list[tuple[float, str, str]]:
    """(time, kind, payload) of every frame and REST snapshot in a capture, in time order.

    kind is "frame" or "snapshot:<SYMBOL>"; REST snapshots recorded in-stream (hftbacktest) are
    "snapshot:?" and belong to the symbol of the depth stream around them.
    """
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    out: list[tuple[float, str, str]] = []
    for f in files:
        if f.name.endswith(".md"):
            continue
        with gzip.open(f, "rt") as fh:
            text = fh.read().splitlines()
        for line in text:
            line = line.rstrip("\n")
            m = _CF_REST.match(line)
            if m:
                if "/depth" in m.group(1):
                    symbol = m.group(1).split("symbol=")[1].split("&")[0]
                    out.append((float(m.group(2)), f"snapshot:{symbol}", m.group(3)))
                continue
            m = _CF_FRAME.match(line)
            if m:
                out.append((float(line.split(":", 1)[0]), "frame", m.group(1)))
                continue
            ts, _, payload = line.partition(" ")
            if ts.isdigit() and len(ts) >= 16:
                kind = "snapshot:?" if payload.startswith('{"lastUpdateId"') else "frame"
                out.append((int(ts) / 1e9, kind, payload))
    out.sort(key=lambda x: x[0])
    return out


def rebuild_books(path: Path, futures: bool) -> dict[str, tuple[dict[float, float], dict[float, float]]]:
    """Binance's documented procedure, written out plainly: first snapshot, then every later diff."""
    lines = raw_lines(path)
    snapshots: dict[str, dict[str, Any]] = {}
    last_symbol = None
    deltas: dict[str, list[dict[str, Any]]] = {}
    for _, kind, payload in lines:
        if kind.startswith("snapshot:"):
            symbol = kind.split(":", 1)[1]
            symbol = last_symbol if symbol == "?" else symbol
            snapshots.setdefault(symbol, json.loads(payload))
            continue
        obj = json.loads(payload)
        if "@depth" in obj.get("stream", ""):
            data = obj["data"]
            last_symbol = data["s"]
            deltas.setdefault(data["s"], []).append(data)
    books = {}
    for symbol, snap in snapshots.items():
        bids = {float(p): float(q) for p, q in snap["bids"] if float(q)}
        asks = {float(p): float(q) for p, q in snap["asks"] if float(q)}
        lid = snap["lastUpdateId"]
        for d in deltas.get(symbol, []):
            if d["u"] < lid or (not futures and d["u"] == lid):
                continue
            for side, levels in ((bids, d["b"]), (asks, d["a"])):
                for p, q in levels:
                    if float(q):
                        side[float(p)] = float(q)
                    else:
                        side.pop(float(p), None)
        books[symbol] = (bids, asks)
    return books


def book_from_messages(messages: list[BookUpdate], symbol: str) -> tuple[dict[float, float], dict[float, float]]:
    """Apply the published BookUpdates of ``symbol`` in order, as a consumer of md:book would."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for m in messages:
        if m.symbol != symbol:
            continue
        if m.snapshot:
            bids, asks = {}, {}
        for side, levels in ((bids, m.bids), (asks, m.asks)):
            for p, q in levels:
                if q:
                    side[p] = q
                else:
                    side.pop(p, None)
    return bids, asks


def trade_key(t: Trade | dict[str, Any]) -> tuple[Any, ...]:
    if isinstance(t, dict):
        return (t["exchange"], t["symbol"], t["trade_id"], t["price"], t["amount"], t["side"], t["ts"])
    return (t.exchange, t.symbol, t.trade_id, t.price, t.amount, t.side, t.ts)


def statuses(run: Run) -> list[Status]:
    return run.of(streams.MD_STATUS, Status)
