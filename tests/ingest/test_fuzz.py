"""Fuzzing the Binance parsers with hypothesis: truncated, reordered, wrong-typed, huge and binary
frames built from real recorded ones never raise out of the feed, and are classified (counted
as a known kind of bad frame) rather than caught by the last-resort guard."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.feed import CollectSink
from services.ingest.venues import get
from shared.schemas import Trade
from tests.ingest.helpers import DATA, SAMPLE, fast_settings


def _real_frames() -> list[str]:
    frames = []
    for path in [
        *(DATA / "binance" / "cryptofeed-2021-10-12").glob("*.ws.*"),
        *(SAMPLE / "binance_futures").rglob("*.gz"),
    ]:
        with gzip.open(path, "rt") as fh:
            lines = fh.readlines()
        for line in lines:
            payload = line.split(": ", 1)[1] if line[:10].isdigit() and ": " in line[:25] else line.partition(" ")[2]
            if payload.startswith("{"):
                frames.append(payload.rstrip("\n"))
    return frames


REAL = _real_frames()
VENUE = get("binance")
FUTURES = get("binance_futures")
MARKETS = VENUE.shipped_markets()
FUTURES_MARKETS = FUTURES.shipped_markets()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)


def fresh_feeds():
    sinks = (CollectSink(), CollectSink())
    return (
        VENUE.feed(MARKETS, sinks[0], request_snapshot=lambda s, d: None),
        FUTURES.feed(FUTURES_MARKETS, sinks[1], request_snapshot=lambda s, d: None),
    )


def feed_all(frames: list[str | bytes]) -> None:
    for feed in fresh_feeds():
        for frame in frames:
            feed.on_frame(frame, 1)  # must not raise
        unexpected = [k for k in feed.errors.counts if k.startswith("unexpected")]
        assert not unexpected, f"frames reached the last-resort guard: {unexpected}"


def _mutate_value(frame: str, path_choice: int, value: object) -> str:
    obj = json.loads(frame)
    target = obj.get("data", obj)
    if isinstance(target, dict) and target:
        key = sorted(target)[path_choice % len(target)]
        target[key] = value
    return json.dumps(obj)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.sampled_from(REAL), st.integers(0, 10_000))
def test_truncated_frames(frame, cut):
    feed_all([frame[: cut % max(len(frame), 1)]])


@FUZZ
@given(st.sampled_from(REAL), st.integers(0, 50), json_values)
def test_wrong_typed_fields(frame, which, value):
    feed_all([_mutate_value(frame, which, value)])


@FUZZ
@given(st.binary(max_size=300))
def test_binary_frames(data):
    feed_all([data])


@FUZZ
@given(st.permutations(REAL[:60]))
def test_reordered_frames(frames):
    feed_all(list(frames))


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(REAL), st.sampled_from(["levels", "string", "int", "depth"]))
def test_huge_frames(frame, kind):
    obj = json.loads(frame)
    data = obj.get("data", obj)
    if kind == "levels":
        data["b"] = [[f"{i}.5", "1.0"] for i in range(200_000)]
    elif kind == "string":
        data["s"] = "X" * 2_000_000
    elif kind == "int":
        data["u"] = 10**40
        data["t"] = -(10**40)
    else:
        obj = {"stream": "btcusdt@depth@100ms", "data": [[[[]]]] * 100_000}
    feed_all([json.dumps(obj)])


async def test_garbage_over_a_real_websocket_never_takes_the_connector_down():
    """The same frames sent by a websocket server: the connection stays up, valid frames after
    the garbage are still published."""
    garbage: list[str | bytes] = [b"\x00\xff\xfe", "{", "[]", "null", '{"stream":"x","data":1}', "x" * 100_000,
                                  '{"stream":"btcusdt@trade","data":{"e":"trade","p":[]}}']  # fmt: skip
    valid = next(f for f in REAL if '"e":"trade"' in f and "btcusdt" in f)

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
        (connector,) = FUTURES.connectors(venue_settings, fast_settings(), sink, FUTURES_MARKETS)
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
    feed_all([frame])
