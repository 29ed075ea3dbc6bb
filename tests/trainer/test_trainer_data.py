"""Candle and trade loaders on real files, and the errors bad files get."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.feather as feather
import pyarrow.parquet as parquet
import pytest

from services.trainer.data import DataError, bars_from_trades, load_bars
from shared.rl.bars import NS_PER_S

DATA = Path(__file__).parent.parent / "data" / "trainer"


def test_binance_headerless_klines() -> None:
    bars = load_bars(DATA / "binance_ADABTC-1m-2021-11-27.csv")
    rows = list(csv.reader((DATA / "binance_ADABTC-1m-2021-11-27.csv").open()))
    assert len(bars) == len(rows)
    assert bars.ts[0] == int(rows[0][0]) * 1_000_000
    assert bars.close.tolist() == [float(r[4]) for r in rows]
    assert bars.volume.tolist() == [float(r[5]) for r in rows]
    assert bars.bar_seconds == 60.0


def test_csv_with_header_gzipped() -> None:
    path = DATA / "btc-perp-20211231_1m_head3000.csv.gz"
    with gzip.open(path, "rt") as fh:
        rows = list(csv.DictReader(fh))
    bars = load_bars(path)
    assert len(bars) == len(rows)
    first = datetime.fromisoformat(rows[0]["timestamp"]).replace(tzinfo=UTC)
    assert bars.ts[0] == int(first.timestamp()) * NS_PER_S
    assert bars.high[10] == float(rows[10]["high"])


def test_banner_line_and_am_pm_dates_newest_first() -> None:
    path = DATA / "cryptodatadownload_Coinbase_BTCUSD_1h_head500.csv.gz"
    with gzip.open(path, "rt") as fh:
        fh.readline()
        rows = list(csv.DictReader(fh))
    bars = load_bars(path)
    assert len(bars) == len(rows)
    assert np.all(np.diff(bars.ts) > 0)  # sorted oldest first
    assert bars.close[-1] == float(rows[0]["close"])  # the file is newest first
    newest = datetime.strptime(rows[0]["date"], "%Y-%m-%d %I-%p").replace(tzinfo=UTC)
    assert bars.ts[-1] == int(newest.timestamp()) * NS_PER_S
    assert bars.bar_seconds == 3600.0


def test_freqtrade_feather_and_json(tmp_path: Path) -> None:
    table = feather.read_table(DATA / "binance_XRP_ETH-5m_2019-10.feather").to_pylist()
    bars = load_bars(DATA / "binance_XRP_ETH-5m_2019-10.feather")
    assert len(bars) == len(table)
    assert bars.close.tolist() == [r["close"] for r in table]
    as_json = [
        [int(r["date"].timestamp() * 1000), r["open"], r["high"], r["low"], r["close"], r["volume"]] for r in table
    ]
    (tmp_path / "XRP_ETH-5m.json").write_text(json.dumps(as_json))
    from_json = load_bars(tmp_path / "XRP_ETH-5m.json")
    np.testing.assert_array_equal(from_json.ts, bars.ts)
    np.testing.assert_array_equal(from_json.close, bars.close)


def test_parquet_trades_become_bars() -> None:
    rows = parquet.read_table(DATA / "binance_BTCUSDT_trades_2021-01-08.parquet").to_pylist()
    bars = load_bars(DATA / "binance_BTCUSDT_trades_2021-01-08.parquet", bar_seconds=5)
    ts = np.array([int(r["timestamp"].timestamp() * 1000) for r in rows])
    buckets = (ts // 5000) * 5000
    assert len(bars) == (buckets.max() - buckets.min()) // 5000 + 1
    first = [r for r, b in zip(rows, buckets, strict=True) if b == buckets.min()]
    assert bars.open[0] == first[0]["price"]
    assert bars.high[0] == max(r["price"] for r in first)
    assert bars.volume[0] == pytest.approx(sum(r["quantity"] for r in first))
    taker_buy = sum(r["quantity"] for r in first if r["buyer_maker"] == "False")
    assert bars.imbalance is not None
    assert bars.imbalance[0] == pytest.approx((2 * taker_buy - bars.volume[0]) / bars.volume[0])


def test_empty_bars_repeat_last_close() -> None:
    ts = np.array([0, 1, 125], dtype=np.int64) * NS_PER_S
    bars = bars_from_trades(ts, np.array([10.0, 11.0, 9.0]), np.array([1.0, 2.0, 3.0]), bar_seconds=60)
    assert bars.close.tolist() == [11.0, 11.0, 9.0]
    assert bars.volume.tolist() == [3.0, 0.0, 3.0]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bad.csv", "foo,bar\n1,2\n", "expected a CSV header with open,high,low,close"),
        (
            "bad2.csv",
            "date,open,high,low,close\n2020-01-01,1,2,x,1\n2020-01-02,1,2,1,1\n",
            "line 2: column 'low': expected a finite number",
        ),
        ("bad.json", "{not json", "expected JSON, parse error at line 1"),
        ("bad2.json", '{"a": 1}', "expected a freqtrade candle list"),
        ("bars.xlsx", "x", "unknown format"),
    ],
)
def test_bad_files_say_what_was_expected(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=expected) as err:
        load_bars(path)
    assert str(path) in str(err.value)


def test_missing_file() -> None:
    with pytest.raises(DataError, match="no such file"):
        load_bars(DATA / "nope.csv")
