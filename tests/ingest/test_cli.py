"""`tradewind normalize` and `tradewind capture` as a user runs them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.ingest.capture import load_session, parse_line
from services.ingest.cli import run_capture
from services.ingest.replay import ReplayServer
from shared.cli import cli
from tests.ingest.helpers import DATA, SAMPLE, fast_settings


def test_normalize_prints_json_lines_with_unified_symbols():
    path = DATA / "binance" / "cryptofeed-2021-10-12" / "BINANCE.ws.1.0.gz"
    result = CliRunner().invoke(cli, ["normalize", str(path)])  # exchange told by the file name
    assert result.exit_code == 0, result.output
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    assert {m["type"] for m in messages} == {"trade", "book"}
    assert {m["symbol"] for m in messages} == {"NKN/USDT", "BLZ/ETH", "LRC/BTC", "RUNE/EUR"}
    trade = next(m for m in messages if m["type"] == "trade")
    assert set(trade) == {"type", "exchange", "symbol", "trade_id", "price", "amount", "side", "ts", "recv_ts"}
    assert "the capture's own market list" in result.stderr


def test_normalize_reports_bad_lines_with_their_number_and_exits_0(tmp_path: Path):
    with gzip.open(SAMPLE / "binance" / "hftbacktest" / "spot_btcusdt_20240808.gz", "rt") as fh:
        lines = fh.read().splitlines()[:200]
    lines[10] = lines[10][:57]  # truncated frame
    lines[20] = lines[20].replace('"p":"', '"p":["')  # wrong-typed price (invalid JSON after that)
    lines[30] = "1723161254000000000 " + json.dumps({"stream": "btcusdt@trade", "data": {"e": "trade", "p": True}})
    plain = tmp_path / "spot_btcusdt.txt"
    plain.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["normalize", "--exchange", "binance", str(plain)])
    assert result.exit_code == 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("spot_btcusdt.txt:")]
    assert [e.split(":")[1] for e in errors] == ["11", "21", "31"]
    assert all(json.loads(line)["type"] in ("trade", "book", "status") for line in result.stdout.splitlines())


def test_normalize_of_an_unreadable_file_exits_2(tmp_path: Path):
    result = CliRunner().invoke(cli, ["normalize", "--exchange", "binance", str(tmp_path / "missing.gz")])
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_normalize_uses_markets_file_for_unknown_symbols(tmp_path: Path):
    markets = tmp_path / "markets.json"
    markets.write_text(json.dumps({"symbols": [{"symbol": "BTCUSDT", "baseAsset": "XBT", "quoteAsset": "USDT"}]}))
    path = SAMPLE / "binance" / "hftbacktest"
    result = CliRunner().invoke(cli, ["normalize", "--exchange", "binance", "--markets", str(markets), str(path)])
    assert result.exit_code == 0
    assert {json.loads(line)["symbol"] for line in result.stdout.splitlines()[:50]} == {"XBT/USDT"}


@pytest.mark.parametrize(
    ("line", "kind", "ts"),
    [
        ("configuration: {}", "config", None),
        ("wss://x/stream?streams=a <-> 1633998511.159679", "open", 1633998511159679000),
        ('wss://x/stream <- 1633998511.5: {"method":"SUBSCRIBE"}', "sent", 1633998511500000000),
        ('https://api.x/api/v3/depth?symbol=A -> 1633998512.320639: {"lastUpdateId":1}', "rest", 1633998512320639000),
        ('1633998512.0633569: {"stream":"a@depth"}', "frame", 1633998512063356900),
        ('1723161253937085768 {"stream":"a@trade"}', "frame", 1723161253937085768),
        ('{"stream":"a@trade"}', "frame", None),
    ],
)
def test_capture_lines_are_classified_one_by_one(line, kind, ts):
    record = parse_line(line, 7, "f")
    assert record is not None and (record.kind, record.ts, record.line) == (kind, ts, 7)


async def test_capture_records_what_the_connector_receives(tmp_path: Path):
    """`tradewind capture` against the replay exchange: the plain file it writes normalizes to the
    same trades as the original capture."""
    source = SAMPLE / "binance" / "hftbacktest"
    out = tmp_path / "capture.gz"
    async with ReplayServer.from_path(source, speed=0) as server:
        ws, http = server.base_urls("binance")
        frames = await run_capture(fast_settings(), "binance", ["BTC/USDT"], out, 3.0, ws, http)
    session = load_session(out, "binance")
    kinds = {r.kind for r in session.records}
    assert frames > 3000 and kinds == {"frame", "rest"}  # frames + exchangeInfo + depth snapshot
    runner = CliRunner()
    ours = runner.invoke(cli, ["normalize", "--exchange", "binance", str(out)])
    original = runner.invoke(cli, ["normalize", "--exchange", "binance", str(source)])

    def trades(output: str) -> list[tuple]:
        return [(m["trade_id"], m["price"]) for m in map(json.loads, output.splitlines()) if m["type"] == "trade"]

    assert trades(ours.stdout) == trades(original.stdout)
