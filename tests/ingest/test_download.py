"""`tradewind download` as a user runs it, against a local fake of Binance's public REST (real ccxt,
real sockets). The bars and trades the fake serves are SYNTHETIC (made up below), with a hole of 10
bars in the venue's data."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from click.testing import CliRunner, Result

from services.trainer.data import load_bars
from services.trainer.market_dir import load_market_dir
from shared.cli import cli
from tests.ingest.fake_history import FakeHistory, agg_trade, kline

INFO = (
    Path(__file__).parent.parent / "data" / "executor" / "binance_exchangeInfo_BTCUSDT_ETHUSDT_NKNUSDT_2021-10-12.json"
)
T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
MIN = 60_000
HOLE = range(120, 130)  # the venue has no bars for these minutes


def synthetic_bars(seed: float) -> list[list[Any]]:
    rows = []
    for i in range(300):
        if i in HOLE:
            continue
        o = seed + i * 0.5
        rows.append(kline(T0 + i * MIN, MIN, o, o + 2.0, o - 1.0, o + 0.25, 1.0 + i % 7))
    return rows


def synthetic_trades() -> list[dict[str, Any]]:
    # three trades per 10 s, two of them in the same millisecond (pages must not split or repeat them)
    out = []
    for k in range(90):
        ts = T0 + k * 10_000
        out += [agg_trade(3 * k, ts, 100 + k, 0.5, k % 2 == 0), agg_trade(3 * k + 1, ts, 100 + k, 0.25, False),
                agg_trade(3 * k + 2, ts + 3, 101 + k, 0.1, True)]  # fmt: skip
    return out


@pytest.fixture
def venue() -> Iterator[tuple[FakeHistory, str]]:
    """The fake served from its own thread and loop (the CLI runs its own event loop)."""
    fake = FakeHistory(INFO.read_text(), {"BTCUSDT": synthetic_bars(100), "ETHUSDT": synthetic_bars(10)},
                       {"BTCUSDT": synthetic_trades()}, max_page=100)  # fmt: skip
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner = web.AppRunner(fake.app())
    port: list[int] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10), "fake venue did not start"
    yield fake, f"http://127.0.0.1:{port[0]}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def run(base: str, *args: str, env: dict[str, str] | None = None) -> Result:
    venues = {"binance": {"urls": {"public": f"{base}/api/v3"}, "market_types": ["spot"], "margin": False}}
    full_env = {"TRADEWIND_EXECUTOR__LIVE_VENUES": json.dumps(venues), **(env or {})}
    return CliRunner().invoke(cli, ["download", "--exchange", "binance", *args, "--json"], env=full_env)


def summary(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def stamp(minute: int) -> str:
    return datetime.fromtimestamp((T0 + minute * MIN) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def klines_asked(fake: FakeHistory) -> list[int]:
    return [int(r["startTime"]) for r in fake.requests if r["path"] == "/api/v3/klines"]


def test_pages_through_history_into_the_trainer_layout_and_reports_the_hole(venue, tmp_path: Path):
    fake, base = venue
    out = summary(run(base, "--symbol", "BTC/USDT", "--symbol", "ETH/USDT", "--since", "2024-01-01",
                      "--until", "2024-01-01T05:00", "--out", str(tmp_path)))  # fmt: skip
    btc = out["markets"][0]
    assert (btc["symbol"], btc["fetched"], btc["first"], btc["last"]) == ("BTC/USDT", 290, stamp(0), stamp(299))
    assert btc["gaps"] == [{"from": stamp(120), "to": stamp(130), "missing_bars": 10}]
    assert len(klines_asked(fake)) >= 2 * 3  # 290 bars at 100 a page, per market
    text = (tmp_path / "binance__BTC-USDT.csv").read_text().splitlines()
    assert text[0] == "date,open,high,low,close,volume"
    assert text[1] == f"{stamp(0)},100.0,102.0,99.0,100.25,1.0"
    assert len(text) == 1 + 290
    bars = load_bars(tmp_path / "binance__BTC-USDT.csv")
    assert len(bars) == 290
    markets, _ = load_market_dir(tmp_path)  # the portfolio trainer reads the folder as it is
    assert markets == [("binance", "BTC/USDT"), ("binance", "ETH/USDT")]


def test_rate_limit_answers_are_waited_out_and_retried(venue, tmp_path: Path):
    fake, base = venue
    fake.throttle = 2
    out = summary(run(base, "--symbol", "BTC/USDT", "--since", "2024-01-01", "--until", "2024-01-01T05:00",
                      "--out", str(tmp_path), "--retry-wait", "0.01"))  # fmt: skip
    assert out["markets"][0]["retries"] == 2
    assert out["markets"][0]["fetched"] == 290


def test_an_interrupted_download_resumes_with_only_the_missing_part(venue, tmp_path: Path):
    fake, base = venue
    args = ["--symbol", "BTC/USDT", "--since", "2024-01-01", "--out", str(tmp_path), "--retry-wait", "0"]
    partial = run(base, *args, "--until", "2024-01-01T01:40")  # minutes 0..99: one page
    assert summary(partial)["markets"][0]["fetched"] == 100
    fake.throttle = 1_000  # now the venue refuses everything: the run fails, what was stored stays
    failed = run(base, *args, "--until", "2024-01-01T05:00")
    assert failed.exit_code == 1 and "still refused after 5 retries" in failed.stderr, failed.output
    fake.throttle = 0
    fake.requests.clear()
    out = summary(run(base, *args, "--until", "2024-01-01T05:00"))
    assert out["markets"][0]["resumed_from"] == stamp(100)
    assert min(klines_asked(fake)) == T0 + 100 * MIN  # nothing stored is asked for again
    assert out["markets"][0]["fetched"] == 190
    dates = [line.split(",")[0] for line in (tmp_path / "binance__BTC-USDT.csv").read_text().splitlines()[1:]]
    assert len(dates) == len(set(dates)) == 290 and dates == sorted(dates)
    again = summary(run(base, *args, "--until", "2024-01-01T05:00"))
    assert again["markets"][0]["fetched"] == 0


def test_public_trades_page_without_splitting_or_repeating_a_millisecond(venue, tmp_path: Path):
    fake, base = venue
    fake.max_page = 10  # a page ends inside a millisecond with two trades at times
    args = ["--symbol", "BTC/USDT", "--since", "2024-01-01", "--trades", "--out", str(tmp_path)]
    first = summary(run(base, *args, "--until", "2024-01-01T00:07"))  # 42 trades
    second = summary(run(base, *args, "--until", "2024-01-01T00:15"))
    assert [first["markets"][1]["fetched"], second["markets"][1]["fetched"]] == [126, 270 - 126]
    lines = (tmp_path / "trades" / "binance__BTC-USDT.csv").read_text().splitlines()
    assert lines[0] == "id,timestamp,price,amount,side"
    ids = [int(line.split(",")[0]) for line in lines[1:]]
    assert ids == list(range(270))
    assert lines[1] == f"0,{T0},100.0,0.5,sell"  # buyer is maker: the taker sold


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--exchange", "nosuchvenue", "--symbol", "BTC/USDT", "--since", "2024-01-01"], "--exchange 'nosuchvenue'"),
        (["--symbol", "DOGE/USDT", "--since", "2024-01-01"], "--symbol 'DOGE/USDT'"),
        (["--symbol", "BTC/USDT", "--since", "2024-02-01", "--until", "2024-01-01"], "--since 2024-02-01"),
        (["--symbol", "BTC/USDT", "--since", "yesterday"], "--since 'yesterday'"),
        (["--symbol", "BTC/USDT", "--since", "2024-01-01", "--timeframe", "7m"], "--timeframe '7m'"),
    ],
)
def test_bad_input_exits_2_naming_the_argument(venue, tmp_path: Path, args: list[str], named: str):
    _, base = venue
    if args[0] == "--exchange":  # the second --exchange wins in click: an unknown ccxt id
        args = [*args[2:], "--exchange", args[1]]
    result = run(base, *args, "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("tradewind download: ") and named in result.stderr, result.stderr


async def test_into_postgresql_bars_and_trades_resumable(venue, isolated: tuple[str, str]):
    fake, base = venue
    dsn, _ = isolated
    args = ["--symbol", "BTC/USDT", "--since", "2024-01-01", "--until", "2024-01-01T03:00", "--trades", "--db"]
    out = summary(await asyncio.to_thread(run, base, *args, env={"DATABASE_URL": dsn}))
    assert [m["fetched"] for m in out["markets"]] == [170, 270]
    fake.requests.clear()
    again = summary(await asyncio.to_thread(run, base, *args, env={"DATABASE_URL": dsn}))
    assert [m["fetched"] for m in again["markets"]] == [0, 0]
    conn = await asyncpg.connect(dsn)
    try:
        bars = await conn.fetch("SELECT ts, open, close FROM bars WHERE exchange = 'binance' AND symbol = 'BTC/USDT'"
                                " AND timeframe = '1m' ORDER BY ts")  # fmt: skip
        trades = await conn.fetchval("SELECT count(*) FROM trades WHERE exchange = 'binance' AND symbol = 'BTC/USDT'")
    finally:
        await conn.close()
    assert len(bars) == 170 and trades == 270
    assert (int(bars[0]["ts"].timestamp() * 1000), bars[0]["open"], bars[0]["close"]) == (T0, 100.0, 100.25)


def test_an_earlier_since_fetches_only_the_bars_before_the_stored_ones(venue, tmp_path: Path):
    fake, base = venue
    args = ["--symbol", "BTC/USDT", "--until", "2024-01-01T05:00", "--out", str(tmp_path)]
    assert summary(run(base, *args, "--since", "2024-01-01T03:20"))["markets"][0]["fetched"] == 100
    fake.requests.clear()
    out = summary(run(base, *args, "--since", "2024-01-01"))
    assert out["markets"][0]["fetched"] == 190 and max(klines_asked(fake)) < T0 + 200 * MIN
    dates = [line.split(",")[0] for line in (tmp_path / "binance__BTC-USDT.csv").read_text().splitlines()[1:]]
    assert len(dates) == len(set(dates)) == 290 and dates == sorted(dates)
