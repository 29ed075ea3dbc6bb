"""Bars of several markets from the real `trades` table: built per market, aligned, a missing market named."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from services.trainer.cli import train
from services.trainer.data import DataError, bars_from_trades
from services.trainer.market_dir import load_markets_from_db, parse_market
from shared.rl.bars import NS_PER_S
from shared.storage import CopyWriter, ns_to_datetime

pytestmark = pytest.mark.integration

COLUMNS = ["exchange", "symbol", "trade_id", "price", "amount", "side", "ts", "recv_ts"]
T0 = 1_699_999_980 * NS_PER_S  # on the minute grid


def _trades(exchange: str, first_s: int, n: int, step_s: int, base: float) -> list[tuple[object, ...]]:
    rng = np.random.default_rng(len(exchange) + first_s)
    return [
        (
            exchange,
            "BTC/USDT",
            str(i),
            float(base + rng.normal()),
            0.5 + i % 3,
            "buy" if i % 2 else "sell",
            ns_to_datetime(T0 + (first_s + i * step_s) * NS_PER_S),
            ns_to_datetime(T0),
        )
        for i in range(n)
    ]


def _bars(rows: list[tuple[object, ...]]) -> Any:
    ts = np.array([int(r[6].timestamp() * 1e6) * 1000 for r in rows], dtype=np.int64)  # type: ignore[attr-defined]
    price = np.array([r[3] for r in rows], dtype=np.float64)
    amount = np.array([r[4] for r in rows], dtype=np.float64)
    return bars_from_trades(ts, price, amount, np.array([r[5] == "buy" for r in rows]), 60.0)


async def test_markets_from_db_are_aligned_on_the_common_span(db: Any, uid: str) -> None:
    spot, perp = f"ex{uid}", f"ex{uid}_futures"
    a = _trades(spot, 0, 400, 7, 100.0)  # 0 s .. 2793 s
    b = _trades(perp, 600, 300, 11, 101.0)  # 600 s .. 3889 s
    writer = CopyWriter(db, "trades", COLUMNS)
    await writer.write(a + b)
    markets = [(spot, "BTC/USDT"), (perp, "BTC/USDT")]
    got = await load_markets_from_db(db, markets, 60.0)
    np.testing.assert_array_equal(got[0].ts, got[1].ts)
    assert got[0].ts[0] == T0 + 600 * NS_PER_S  # the later market's first bar
    assert got[0].ts[-1] == T0 + 2760 * NS_PER_S  # the earlier market's last bar (2793 s -> the 2760 s bar)
    for rows, bars in zip((a, b), got, strict=True):
        alone = _bars(rows)  # each market's bars as the single-market path builds them
        at = alone.ts.searchsorted(bars.ts)
        np.testing.assert_array_equal(alone.ts[at], bars.ts)
        np.testing.assert_allclose(alone.close[at], bars.close)
        np.testing.assert_allclose(alone.volume[at], bars.volume)

    with pytest.raises(DataError, match=rf"no trades for ex{uid}_missing BTC/USDT"):
        await load_markets_from_db(db, [*markets, (f"ex{uid}_missing", "BTC/USDT")], 60.0)
    late = _trades(f"ex{uid}_late", 5000, 20, 30, 99.0)
    await writer.write(late)
    with pytest.raises(DataError, match=rf"ex{uid}_late BTC/USDT: its bars start at"):
        await load_markets_from_db(db, [markets[0], (f"ex{uid}_late", "BTC/USDT")], 60.0)


def test_parse_market_names_a_bad_spec() -> None:
    assert parse_market("binance_futures:btc/usdt") == ("binance_futures", "BTC/USDT")
    with pytest.raises(DataError, match="EXCHANGE:BASE/QUOTE"):
        parse_market("binance-BTCUSDT")


async def test_train_from_db_names_the_market_without_trades(db: Any, database_url: str, uid: str) -> None:
    await CopyWriter(db, "trades", COLUMNS).write(_trades(f"ex{uid}", 0, 50, 60, 100.0))
    args = ["--algo", "ppo", "--market", f"ex{uid}:BTC/USDT", "--market", f"ex{uid}_futures:BTC/USDT"]
    result = await asyncio.to_thread(CliRunner().invoke, train, args, env={"DATABASE_URL": database_url})
    assert result.exit_code == 2, result.output
    assert f"no trades for ex{uid}_futures BTC/USDT" in result.output
    both = await asyncio.to_thread(CliRunner().invoke, train, [*args, "--data", "x.csv"])
    assert both.exit_code == 2 and "exactly one of them" in both.output
