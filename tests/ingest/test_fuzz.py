"""Fuzzing every venue's parser with hypothesis: truncated, reordered, wrong-typed, huge and binary
frames built from the venue's real recorded ones never raise out of its feed, and are classified
(counted as a known kind of bad frame) rather than caught by the last-resort guard.

Wrong-typed frames are fed in context: after the recorded frames before them (subscription
acks, book snapshots), so the delta and checksum paths of a live book are fuzzed too.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.capture import read_records
from services.ingest.feed import CollectSink, Feed, SymbolMap
from services.ingest.venues import NAMES, get
from shared.schemas import Trade
from tests.ingest.helpers import DATA, SAMPLE, fast_settings

# Recorded captures per venue (every venue Tradewind supports has one).
CAPTURES: dict[str, list[Path]] = {
    "binance": [DATA / "binance" / "cryptofeed-2021-10-12"],
    "binance_us": [DATA / "binance_us" / "cryptofeed-2021-04-17"],
    "binance_futures": [DATA / "binance_futures" / "cryptofeed-2021-07-22", SAMPLE / "binance_futures" / "hftbacktest"],
    "coinbase": [DATA / "coinbase" / "cryptofeed-2021-04-17"],
    "kraken": [DATA / "kraken" / "cryptofeed-2021-04-17"],
    "okx": [DATA / "okx" / "cryptofeed-2022-05-13"],
    "bybit": [DATA / "bybit" / "v5"],
    "bitstamp": [DATA / "bitstamp" / "cryptofeed-2022-01-05"],
    "bitfinex": [DATA / "bitfinex" / "cryptofeed-2021-04-17"],
    "gemini": [DATA / "gemini" / "cryptofeed-2021-06-24"],
}
VENUES = sorted(CAPTURES)
WINDOW = 120  # frames from the start of a capture the in-context tests draw from

_CF_FRAME = re.compile(r"^(\d+\.\d+): (.+)$")
_NS_FRAME = re.compile(r"^(\d{16,20}) (.+)$")


@dataclass(frozen=True)
class Corpus:
    exchange: str
    markets: SymbolMap
    timeline: list[tuple[str, str]]  # ("", frame) or (venue symbol, REST book snapshot body), in time order

    @property
    def frames(self) -> list[str]:
        return [payload for symbol, payload in self.timeline if not symbol]

    @property
    def snapshots(self) -> list[tuple[str, str]]:
        return [(symbol, payload) for symbol, payload in self.timeline if symbol]


def _timeline(exchange: str, paths: list[Path]) -> list[tuple[str, str]]:
    """Received frames and REST snapshots of cryptofeed, hftbacktest and plain captures, read
    plainly (no ingest parsing code; the venue only names the symbol of a snapshot URL)."""
    venue = get(exchange)
    timed: list[tuple[float, int, str, str]] = []
    for root in paths:
        for f in sorted(root.iterdir()):
            if not f.name.endswith(".gz") or re.match(r"^[A-Z_]+\.0\.gz$", f.name):
                continue
            if ".http." in f.name:
                for r in read_records(f):
                    symbol = venue.snapshot_symbol(r) if r.kind == "rest" else None
                    if symbol and r.ts is not None:
                        timed.append((r.ts / 1e9, r.line, symbol, r.data))
                continue
            with gzip.open(f, "rt") as fh:
                lines = fh.read().splitlines()
            for n, line in enumerate(lines):
                if m := _CF_FRAME.match(line):
                    timed.append((float(m.group(1)), n, "", m.group(2)))
                elif m := _NS_FRAME.match(line):  # hftbacktest: <market>_<symbol>_<date>.gz, snapshots in-stream
                    payload = m.group(2)
                    symbol = f.name.split("_")[1].upper() if payload.startswith('{"lastUpdateId"') else ""
                    timed.append((int(m.group(1)) / 1e9, n, symbol, payload))
                elif line.startswith(("{", "[")):
                    timed.append((0.0, n, "", line))
    timed.sort(key=lambda t: (t[0], t[1]))
    return [(symbol, payload) for _, _, symbol, payload in timed]


@cache
def corpus(exchange: str) -> Corpus:
    return Corpus(exchange, get(exchange).shipped_markets(), _timeline(exchange, CAPTURES[exchange]))


def fresh_feed(exchange: str) -> Feed:
    return get(exchange).feed(corpus(exchange).markets, CollectSink(), request_snapshot=lambda s, d: None)


def assert_classified(feed: Feed) -> None:
    unexpected = {k: n for k, n in feed.errors.counts.items() if k.startswith("unexpected")}
    assert not unexpected, f"{feed.exchange}: frames reached the last-resort guard: {unexpected}"


def feed_all(exchange: str, frames: list[str | bytes], before: list[tuple[str, str]] = ()) -> Feed:
    """A fresh feed given the recorded ``before`` (frames and REST snapshots), then ``frames``."""
    feed = fresh_feed(exchange)
    for symbol, payload in before:
        if symbol:
            feed.on_snapshot(symbol, payload, 1)
        else:
            feed.on_frame(payload, 1)
    for frame in frames:
        feed.on_frame(frame, 1)  # must not raise
    assert_classified(feed)
    return feed


# -- mutations -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)
numeric_text = st.sampled_from(["", "-1", "0", "1e400", "nan", "inf", "1.5.5", "０", "1_0", "abc"])
DELETE = object()  # the mutation that removes the node instead of replacing it


def mutate(obj: Any, path: list[int], value: object) -> Any:
    """Replace (or delete) the node reached by following ``path`` (child indexes, modulo each
    container's size) down the JSON tree of a frame; the root is replaced when the path is empty."""
    if not path or not isinstance(obj, (dict, list)) or not obj:
        return obj if value is DELETE else value
    key: Any = sorted(obj, key=str)[path[0] % len(obj)] if isinstance(obj, dict) else path[0] % len(obj)
    child = obj[key]
    if len(path) > 1 and isinstance(child, (dict, list)) and child:
        obj[key] = mutate(child, path[1:], value)
    elif value is DELETE:
        del obj[key]
    else:
        obj[key] = value
    return obj


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
window_index = st.integers(0, WINDOW - 1)
paths = st.lists(st.integers(0, 1000), max_size=6)
values = st.one_of(json_values, numeric_text, st.just(DELETE))


@pytest.mark.parametrize("exchange", VENUES)
def test_every_venue_is_fuzzed(exchange):
    assert set(NAMES) == set(CAPTURES)
    frames = corpus(exchange).frames
    assert len(frames) >= 50, f"{exchange}: too few recorded frames to fuzz"
    feed = feed_all(exchange, [], corpus(exchange).timeline[:WINDOW])
    assert feed.books, f"{exchange}: the fuzz window has no book to fuzz"


def in_context(exchange: str, index: int) -> tuple[list[tuple[str, str]], str, list[str]]:
    """(what was recorded before the ``index``-th frame of the window, that frame, the frames after)."""
    timeline = corpus(exchange).timeline
    positions = [i for i, (symbol, _) in enumerate(timeline[:WINDOW]) if not symbol]
    at = positions[index % len(positions)]
    return timeline[:at], timeline[at][1], [payload for symbol, payload in timeline[at + 1 :] if not symbol]


@pytest.mark.parametrize("exchange", VENUES)
@FUZZ
@given(index=window_index, cut=st.integers(0, 100_000))
def test_truncated_frames_are_counted(exchange, index, cut):
    frames = corpus(exchange).frames
    frame = frames[index % min(len(frames), WINDOW)]
    feed = feed_all(exchange, [frame[: cut % len(frame)]])
    assert feed.errors.total == 1, feed.errors.counts  # a cut JSON object or array is never JSON


@pytest.mark.parametrize("exchange", VENUES)
@FUZZ
@given(index=window_index, path=paths, value=values, extra=st.integers(0, 3))
def test_wrong_typed_fields_in_context(exchange, index, path, value, extra):
    """The frame at ``index`` is changed and fed after the recorded frames before it (so books
    are live), then ``extra`` recorded frames after it: the feed carries on."""
    before, frame, after = in_context(exchange, index)
    changed = json.dumps(mutate(json.loads(frame), path, value))
    feed_all(exchange, [changed, *after[:extra]], before)


@pytest.mark.parametrize("exchange", VENUES)
@FUZZ
@given(data=st.binary(max_size=300))
def test_binary_frames_are_counted(exchange, data):
    feed = feed_all(exchange, [data])
    assert feed.errors.total + sum(feed.ignored.values()) == 1, (feed.errors.counts, feed.ignored)


@pytest.mark.parametrize("exchange", VENUES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reordered_frames(exchange, data):
    frames = corpus(exchange).frames[:40]
    feed_all(exchange, data.draw(st.permutations(frames)))


def _largest_list(obj: Any) -> list[Any]:
    best: list[Any] = obj if isinstance(obj, list) else []
    children = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else []
    for child in children:
        found = _largest_list(child)
        if len(found) > len(best):
            best = found
    return best


def _leaves(obj: Any, kind: type) -> list[tuple[Any, Any]]:
    """(container, key) of every leaf of type ``kind``."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, child in items:
        if isinstance(child, kind) and not isinstance(child, bool):
            out.append((obj, key))
        out.extend(_leaves(child, kind))
    return out


def huge(frame: str, kind: str) -> str:
    obj = json.loads(frame)
    if kind == "levels":  # the frame's longest list (book levels, trades) made 100,000 long
        longest = _largest_list(obj)
        longest[:] = (longest[:1] or [["1.5", "1.0"]]) * 100_000
    elif kind == "strings":  # its first strings (channel, symbol, a price...) a million characters long
        for parent, key in _leaves(obj, str)[:4]:
            parent[key] = "9" * 1_000_000
    elif kind == "numbers":
        for i, (parent, key) in enumerate(_leaves(obj, (int, float))):
            parent[key] = (-1) ** i * 10**40
    else:  # nesting far deeper than any parser's recursion limit
        return "[" * 100_000 + "]" * 100_000
    return json.dumps(obj)


@pytest.mark.parametrize("kind", ["levels", "strings", "numbers", "deep"])
@pytest.mark.parametrize("exchange", VENUES)
def test_huge_frames(exchange, kind):
    """The recorded frame with the most data, blown up, fed after the frames before it."""
    timeline = corpus(exchange).timeline[:WINDOW]
    index = max((i for i, (symbol, _) in enumerate(timeline) if not symbol), key=lambda i: len(timeline[i][1]))
    feed_all(
        exchange, [huge(timeline[index][1], kind), *(p for s, p in timeline[index + 1 :] if not s)], timeline[:index]
    )


SNAPSHOT_VENUES = [ex for ex in VENUES if corpus(ex).snapshots]


@pytest.mark.parametrize("exchange", SNAPSHOT_VENUES)
@FUZZ
@given(index=st.integers(0, 1000), path=paths, value=values, cut=st.none() | st.integers(0, 100_000))
def test_rest_snapshot_bodies(exchange, index, path, value, cut):
    """Venues that resync from REST: a broken snapshot body is counted, never raised."""
    snapshots = corpus(exchange).snapshots
    symbol, body = snapshots[index % len(snapshots)]
    broken = body[: cut % len(body)] if cut is not None else json.dumps(mutate(json.loads(body), path, value))
    feed = fresh_feed(exchange)
    feed.on_snapshot(symbol, broken, 1)
    feed.on_snapshot(symbol, body, 2)
    assert_classified(feed)


async def test_garbage_over_a_real_websocket_never_takes_the_connector_down():
    """The same frames sent by a websocket server: the connection stays up, valid frames after
    the garbage are still published."""
    garbage: list[str | bytes] = [b"\x00\xff\xfe", "{", "[]", "null", '{"stream":"x","data":1}', "x" * 100_000,
                                  '{"stream":"btcusdt@trade","data":{"e":"trade","p":[]}}']  # fmt: skip
    futures = get("binance_futures")
    real = corpus("binance_futures").frames
    valid = next(f for f in real if '"e":"trade"' in f and "btcusdt" in f)

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # the SUBSCRIBE frame
        for g in garbage:
            await (ws.send_bytes(g) if isinstance(g, bytes) else ws.send_str(g))
        await ws.send_str(valid)
        async for _ in ws:  # until the connector closes
            pass
        return ws

    app = web.Application()
    app.router.add_get("/stream", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        sink = CollectSink()
        venue_settings = (
            fast_settings()
            .venues["binance_futures"]
            .model_copy(
                update={
                    "base_url_ws": f"ws://127.0.0.1:{port}",
                    "base_url_http": f"http://127.0.0.1:{port}",
                    "symbols": ["BTC/USDT"],
                    "book": False,
                }
            )
        )
        (connector,) = futures.connectors(venue_settings, fast_settings(), sink, corpus("binance_futures").markets)
        task = asyncio.create_task(connector.run())
        for _ in range(100):
            await asyncio.sleep(0.05)
            if sink.of(Trade):
                break
        connector.stop()
        await task
    finally:
        await runner.cleanup()
    assert len(sink.of(Trade)) == 1
    assert connector.connections == 1 and connector.reconnects == 0
    assert connector.feed.errors.total == len(garbage) - 1  # all but the frame of an unknown stream
    assert connector.feed.ignored["x"] == 1


@pytest.mark.parametrize("frame", ['{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","s":"BTCUSDT",'
                                   '"U":5,"u":2,"b":[["nan","1"]],"a":[["1","-1"]]}}'])  # fmt: skip
def test_nonsense_values_do_not_raise(frame):
    feed_all("binance", [frame])
    feed_all("binance_futures", [frame])
