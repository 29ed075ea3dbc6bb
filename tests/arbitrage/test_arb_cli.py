"""`tradewind arb scan` end to end through the real command group."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.executor.arbitrage.markets import markets_from_symbols
from shared.cli import cli

from .oracle import hub_order, oracle_cycles, oracle_profitable, rotation_free
from .snapshots import BINANCE_MARKETS, POLONIEX_TICKERS, poloniex_tops


def write_books(path: Path, books: dict[str, tuple[list[list[float]], list[list[float]]]]) -> Path:
    path.write_text("".join(json.dumps({"symbol": s, "bids": b, "asks": a}) + "\n" for s, (b, a) in books.items()))
    return path


def run_scan(*args: str) -> list[dict]:
    result = CliRunner().invoke(cli, ["arb", "scan", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_scan_of_a_real_ticker_snapshot_matches_the_oracle(tmp_path: Path) -> None:
    tops = poloniex_tops(POLONIEX_TICKERS[0])
    books = {s: ([[b, 1e6]] if b > 0 else [], [[a, 1e6]] if a > 0 else []) for s, (b, a) in tops.items()}
    path = write_books(tmp_path / "books.jsonl", books)
    found = run_scan("--books", str(path), "--fee-bps", "12.5", "--max-len", "4")

    markets = markets_from_symbols(sorted(tops), 0.00125)
    expected = oracle_profitable(oracle_cycles(markets, 4, hub_order(markets)), tops)
    got = {rotation_free([(leg["symbol"], leg["side"]) for leg in c["legs"]]): c for c in found}
    assert found and set(got) == set(expected)
    for key, cycle in got.items():
        assert cycle["gross_return"] == pytest.approx(expected[key][0], abs=1e-9)
        assert cycle["net_return"] == pytest.approx(expected[key][1], abs=1e-9)
        assert cycle["assets"][0] == cycle["assets"][-1] and len(cycle["legs"]) == len(cycle["assets"]) - 1
        assert cycle["expected_profit"] > 0 and cycle["max_start_amount"] > 0
    assert [c["net_return"] for c in found] == sorted((c["net_return"] for c in found), reverse=True)


def test_start_assets_and_max_len(tmp_path: Path) -> None:
    tops = poloniex_tops(POLONIEX_TICKERS[1])
    books = {s: ([[b, 1e6]] if b > 0 else [], [[a, 1e6]] if a > 0 else []) for s, (b, a) in tops.items()}
    path = write_books(tmp_path / "books.jsonl", books)
    found = run_scan("--books", str(path), "--fee-bps", "0", "--max-len", "3", "--start", "USDT,BTC")
    assert found
    for cycle in found:
        assert len(cycle["legs"]) == 3
        assert cycle["assets"][0] == ("USDT" if "USDT" in cycle["assets"] else "BTC")


def test_binance_market_rules_shape_the_orders(tmp_path: Path) -> None:
    with gzip.open(BINANCE_MARKETS, "rt") as f:
        raw = {f"{s['baseAsset']}/{s['quoteAsset']}": s for s in json.load(f)["symbols"]}
    # ETH is cheap in BTC terms here: USDT -> BTC -> ETH -> USDT pays ~1% gross.
    books = {
        "BTC/USDT": ([[55000.0, 0.5]], [[55010.0, 0.5]]),
        "ETH/BTC": ([[0.0640, 20.0]], [[0.0641, 3.3333]]),
        "ETH/USDT": ([[3560.0, 2.0], [3500.0, 10.0]], [[3561.0, 2.0]]),
    }
    path = write_books(tmp_path / "books.jsonl", books)
    found = run_scan("--books", str(path), "--markets", str(BINANCE_MARKETS), "--fee-bps", "10", "--start", "USDT")
    assert [c["assets"] for c in found] == [["USDT", "BTC", "ETH", "USDT"]]
    for leg in found[0]["legs"]:
        filters = {f["filterType"]: f for f in raw[leg["symbol"]]["filters"]}
        step = float(filters["LOT_SIZE"]["stepSize"])
        assert leg["amount"] / step == pytest.approx(round(leg["amount"] / step), abs=1e-6)
        assert leg["amount"] * leg["price"] >= float(filters["MIN_NOTIONAL"]["minNotional"])
    # 2 ETH at 3560 pay; at 3500 a round trip returns 3500 / (55010 * 0.0641) < 1: stop near 2 ETH
    assert found[0]["legs"][2]["amount"] == pytest.approx(2.0, abs=0.001)


def test_bad_books_file_fails_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "books.jsonl"
    path.write_text('{"symbol": "BTC/USDT", "bids": [[1, 1]], "asks": [[2, 1]]}\n{"symbol": 5}\n')
    result = CliRunner().invoke(cli, ["arb", "scan", "--books", str(path)])
    assert result.exit_code != 0
    assert "books.jsonl:2" in result.output


def test_help() -> None:
    result = CliRunner().invoke(cli, ["arb", "scan", "--help"])
    assert result.exit_code == 0 and "--books" in result.output and "--max-len" in result.output
