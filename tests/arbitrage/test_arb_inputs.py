"""Market-list and books-file readers: real Binance exchangeInfo, ccxt markets, clear errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from services.executor.arbitrage.books import BookFileError, load_books
from services.executor.arbitrage.markets import MarketFileError, load_markets, markets_from_symbols

from .snapshots import BINANCE_MARKETS


def test_binance_exchange_info_keeps_tradable_spot_markets_with_their_filters() -> None:
    with gzip.open(BINANCE_MARKETS, "rt") as f:
        raw = json.load(f)["symbols"]
    tradable = {
        f"{s['baseAsset']}/{s['quoteAsset']}": s
        for s in raw
        if s["status"] == "TRADING" and s.get("isSpotTradingAllowed", True)
    }
    markets = load_markets(BINANCE_MARKETS, default_taker_fee=0.00075)
    assert {m.symbol for m in markets} == set(tradable)
    for market in markets:
        filters = {f["filterType"]: f for f in tradable[market.symbol]["filters"]}
        assert market.step == float(filters["LOT_SIZE"]["stepSize"])
        assert market.min_amount == float(filters["LOT_SIZE"]["minQty"])
        assert market.min_notional == float(filters["MIN_NOTIONAL"]["minNotional"])
        assert market.tick == float(filters["PRICE_FILTER"]["tickSize"])
        assert market.taker_fee == 0.00075


def ccxt_market(symbol: str, **extra: object) -> dict[str, object]:
    base, quote = symbol.split("/")
    return {
        "id": base + quote,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "active": True,
        "spot": True,
        "taker": 0.002,
        "precision": {"amount": 0.001, "price": 0.01},
        "limits": {"amount": {"min": 0.01, "max": None}, "cost": {"min": 5.0, "max": None}},
        **extra,
    }


@pytest.mark.parametrize("as_list", [False, True])
def test_ccxt_markets_as_dict_or_list(tmp_path: Path, as_list: bool) -> None:
    entries = [
        ccxt_market("BTC/USDT"),
        ccxt_market("ETH/BTC", taker=None),
        ccxt_market("OLD/USDT", active=False),
        ccxt_market("BTC/USDT:USDT", spot=False),
    ]
    path = tmp_path / "markets.json"
    path.write_text(json.dumps(entries if as_list else {e["symbol"]: e for e in entries}))
    markets = {m.symbol: m for m in load_markets(path, default_taker_fee=0.001)}
    assert set(markets) == {"BTC/USDT", "ETH/BTC"}
    btc = markets["BTC/USDT"]
    assert (btc.taker_fee, btc.step, btc.min_amount, btc.min_notional, btc.tick) == (0.002, 0.001, 0.01, 5.0, 0.01)
    assert markets["ETH/BTC"].taker_fee == 0.001  # no fee in the list: the default


def test_unknown_market_format_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "weird.json"
    path.write_text(json.dumps({"pairs": []}))
    with pytest.raises(MarketFileError, match=r"weird\.json"):
        load_markets(path, 0.001)
    with pytest.raises(MarketFileError, match="BASE/QUOTE"):
        markets_from_symbols(["BTCUSDT"], 0.001)


def test_books_sorted_and_empty_levels_dropped(tmp_path: Path) -> None:
    path = tmp_path / "books.jsonl"
    path.write_text(
        '{"symbol": "ETH/BTC", "bids": [[0.05, 1], [0.051, 2], [0.049, 0]], "asks": [[0.053, 1], [0.052, 3]]}\n'
        "\n"
        '{"symbol": "BTC/USDT", "bids": [], "asks": [[100, 1]]}\n'
    )
    books = load_books(path)
    assert books["ETH/BTC"].bids == ((0.051, 2.0), (0.05, 1.0))
    assert books["ETH/BTC"].asks == ((0.052, 3.0), (0.053, 1.0))
    assert books["BTC/USDT"].best_bid == 0.0


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"symbol": "ETH/BTC", "bids": [[0.05]], "asks": []}', "bids"),
        ('{"symbol": "ETHBTC", "bids": [], "asks": []}', "BASE/QUOTE"),
        ('{"symbol": "ETH/BTC", "bids": [[-1, 1]], "asks": []}', "positive price"),
        ('{"symbol": "ETH/BTC", "bids": []', "truncated|malformed|Input"),
    ],
)
def test_bad_books_line_names_file_and_line(tmp_path: Path, line: str, why: str) -> None:
    path = tmp_path / "books.jsonl"
    path.write_text('{"symbol": "BTC/USDT", "bids": [[1, 1]], "asks": [[2, 1]]}\n' + line + "\n")
    with pytest.raises(BookFileError, match=rf"books.jsonl:2: .*({why})"):
        load_books(path)
