"""Generated broken files through every file-reading command (in-process, click's CliRunner): never a
traceback, never a hang, never exit 0 with nonsense — one line naming the file, exit status 2."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.cli import cli

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**30), 10**30), st.sampled_from(["x", "", "1e999"])
)


@st.composite
def broken(draw: st.DrawFn, good: bytes) -> tuple[bytes, bool]:
    """A file that is wrong in one way: truncated, garbage, empty, wrong compression, or a bad value."""
    kind = draw(st.sampled_from(["truncated_gz", "garbage", "empty", "not_gzip", "bad_value"]))
    if kind == "truncated_gz":
        whole = gzip.compress(good)
        return whole[: draw(st.integers(0, len(whole) - 9))], True
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=200)), False
    if kind == "empty":
        return b"", False
    if kind == "not_gzip":
        return good, True  # named .gz, plain text inside
    value = str(draw(NUMBER)).encode()
    lines = good.splitlines(keepends=True)
    i = draw(st.integers(1, len(lines) - 1))
    return b"".join(lines[:i]) + lines[i].replace(b"100", value, 1) + b"".join(lines[i + 1 :]), False


def check(argv: list[str], path: Path, allowed_ok: bool = False) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(cli, argv, env={"REDIS_URL": None, "DATABASE_URL": None, "TRADEWIND_DEBUG": None})
    assert time.monotonic() - started < 20
    assert isinstance(result.exception, SystemExit) or result.exception is None, repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert allowed_ok, result.output
        return
    assert result.exit_code == 2, result.output
    last = result.stderr.splitlines()[-1]
    assert last.startswith("tradewind ") and "unexpected error" not in last, last


BARS = b"date,open,high,low,close,volume\n" + b"".join(
    f"2024-01-01T{i // 60:02d}:{i % 60:02d}:00Z,100,101,99,100,5\n".encode() for i in range(80)
)


@FUZZ
@given(broken(BARS))
def test_backtest_and_train_on_broken_candles(tmp_path_factory, case: tuple[bytes, bool]) -> None:
    data, gz = case
    path = tmp_path_factory.mktemp("fuzz") / ("bars.csv.gz" if gz else "bars.csv")
    path.write_bytes(data)
    # A bad value may be one the reader can still use (e.g. a volume of 10**30): then the run is real.
    check(["backtest", "--data", str(path), "--policy", "baseline:flat", "--json"], path, allowed_ok=True)
    check(["train", "--algo", "ppo", "--data", str(path), "--timesteps", "0"], path)


BOOKS = b"".join(f'{{"symbol": "A{i}/B", "bids": [[100, 1]], "asks": [[101, 1]]}}\n'.encode() for i in range(20))


@FUZZ
@given(broken(BOOKS))
def test_arb_scan_on_broken_books(tmp_path_factory, case: tuple[bytes, bool]) -> None:
    data, gz = case
    path = tmp_path_factory.mktemp("fuzz") / ("books.jsonl.gz" if gz else "books.jsonl")
    path.write_bytes(data)
    check(["arb", "scan", "--books", str(path), "--json"], path, allowed_ok=True)


MARKETS = (
    b'{"symbols": ['
    + b",".join(
        b'{"baseAsset": "A%d", "quoteAsset": "B", "status": "TRADING", "filters": [{"filterType": "LOT_SIZE", '
        b'"stepSize": "100", "minQty": "0"}]}\n' % i
        for i in range(5)
    )
    + b"]}\n"
)


@FUZZ
@given(broken(MARKETS))
def test_arb_scan_on_broken_markets(tmp_path_factory, case: tuple[bytes, bool]) -> None:
    data, gz = case
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / ("markets.json.gz" if gz else "markets.json")
    path.write_bytes(data)
    books = folder / "books.jsonl"
    books.write_bytes(BOOKS)
    check(["arb", "scan", "--markets", str(path), "--books", str(books), "--json"], path, allowed_ok=True)


T0 = 1_700_000_000_000_000_000
NORMALIZED = b"".join(
    (
        f'{{"type":"trade","exchange":"binance","symbol":"BTC/USDT","trade_id":"{i}","price":100,'
        f'"amount":0.1,"side":"buy","ts":{T0 + i * 10**9},"recv_ts":{T0 + i * 10**9}}}\n'
    ).encode()
    for i in range(30)
)


@FUZZ
@given(broken(NORMALIZED))
def test_risk_simulate_on_broken_lines(tmp_path_factory, case: tuple[bytes, bool]) -> None:
    data, gz = case
    path = tmp_path_factory.mktemp("fuzz") / ("norm.jsonl.gz" if gz else "norm.jsonl")
    path.write_bytes(data)
    check(["risk", "simulate", "--data", str(path), "--crash-at", "10", "--json"], path, allowed_ok=True)


RAW = b"".join(
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":%d,"p":"100","q":"1","T":1,"m":true}}\n' % i
    for i in range(20)
)


@FUZZ
@given(broken(RAW))
def test_normalize_on_broken_captures(tmp_path_factory, case: tuple[bytes, bool]) -> None:
    data, gz = case
    path = tmp_path_factory.mktemp("fuzz") / ("capture.txt.gz" if gz else "capture.txt")
    path.write_bytes(data)
    check(["normalize", "-e", "binance", str(path)], path, allowed_ok=True)
