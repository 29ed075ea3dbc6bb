"""The policy registry (shared.storage.policies) as `tradewind policy list` shows it: where each policy
came from, whether it trades now, and why (not)."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from services.trainer.policy_cli import policy
from services.trainer.promotion import promoted_markets
from shared.config import StorageSettings
from shared.storage import Database, policies
from shared.storage.policies import PolicyRegistry

pytestmark = pytest.mark.integration


async def test_policy_list_shows_source_status_and_reason(isolated: tuple[str, str]) -> None:
    dsn, _ = isolated
    db = await Database.connect(dsn, StorageSettings())
    await db.migrate()
    registry = PolicyRegistry(db)
    try:

        async def trial(source: str, sharpe: float) -> str:
            return await registry.record_trial(
                "ppo", f"/ckpt/{sharpe}", {"sharpe": sharpe}, {}, 0, 60, "binance", "BTC/USDT", source=source
            )

        first = await trial("online", 1.0)
        await registry.verdict([first], "beats the champion and every baseline out of sample")
        await registry.promote(first, "ppo", "/ckpt/1.0", {"sharpe": 1.0}, "binance", "BTC/USDT")
        second = await trial("manual", 2.0)
        await registry.promote(second, "ppo", "/ckpt/2.0", {"sharpe": 2.0}, "binance", "BTC/USDT")
        rejected = await trial("online", 0.5)
        await registry.verdict([rejected], "sharpe 0.500 does not beat the champion (2.000)")
        candidate = await trial("online", 0.1)

        result = await asyncio.to_thread(CliRunner().invoke, policy, ["list", "--json"], env={"DATABASE_URL": dsn})
        assert result.exit_code == 0, result.output
        rows = {r["id"]: r for r in json.loads(result.stdout)}
        assert {i: (r["source"], r["status"]) for i, r in rows.items()} == {
            first: ("online", "retired"),
            second: ("manual", "promoted"),
            rejected: ("online", "rejected"),
            candidate: ("online", "candidate"),
        }
        assert rows[rejected]["reason"].startswith("sharpe 0.500 does not beat")
        assert rows[second]["markets"] == ["binance:BTC/USDT"] and rows[second]["figures"] == {"sharpe": 2.0}
        table = await asyncio.to_thread(CliRunner().invoke, policy, ["list"], env={"DATABASE_URL": dsn})
        assert table.exit_code == 0 and "promoted" in table.output and "retired" in table.output
    finally:
        await db.close()


async def test_the_book_is_the_latest_policy_per_market_set(isolated: tuple[str, str]) -> None:
    """`promoted_per_market`: one policy per market set, and a later promotion on any of a set's markets
    takes the market over (what the executor trades and `tradewind status` shows)."""
    dsn, _ = isolated
    db = await Database.connect(dsn, StorageSettings())
    await db.migrate()
    registry = PolicyRegistry(db)
    spot, perp, kraken = ("binance", "BTC/USDT"), ("binance_futures", "BTC/USDT"), ("kraken", "BTC/USD")
    try:

        async def promoted(name: str, markets: list[tuple[str, str]]) -> str:
            policy_id = await registry.record_trial("ppo", f"/ckpt/{name}", {}, {}, 0, 60, markets=markets)
            await registry.promote(policy_id, "ppo", f"/ckpt/{name}", {}, markets=markets)
            return policy_id

        single = await promoted("single", [spot])
        kraken_id = await promoted("kraken", [kraken])
        portfolio = await promoted("portfolio", [perp, spot])  # takes binance BTC/USDT over from `single`
        book = await policies.promoted_per_market(db)
        assert [(r["id"], r["markets"]) for r in book] == [(kraken_id, (kraken,)), (portfolio, (spot, perp))]
        rows = await db.fetch("SELECT id, exchange, symbol FROM policies ORDER BY created_at")
        assert [(r["exchange"], r["symbol"]) for r in rows] == [
            spot,
            kraken,
            (None, None),
        ]  # a portfolio: no one market
        assert {r["id"]: r["status"] for r in await policies.listing(db)} == {
            single: "retired",
            kraken_id: "promoted",
            portfolio: "promoted",
        }
        assert (await registry.champion(markets=[spot, perp]) or {}).get("id") == portfolio
        assert (await registry.champion("binance", "BTC/USDT") or {}).get("id") == single
    finally:
        await db.close()


def test_promote_takes_the_markets_from_the_metadata() -> None:
    meta = {
        "markets": [
            {"exchange": "binance_futures", "symbol": "BTC/USDT"},
            {"exchange": "binance", "symbol": "BTC/USDT"},
        ]
    }
    both = (("binance", "BTC/USDT"), ("binance_futures", "BTC/USDT"))
    assert promoted_markets(meta, None, None) == both
    with pytest.raises(ValueError, match="says it trades binance BTC/USDT, binance_futures BTC/USDT"):
        promoted_markets(meta, "binance", "BTC/USDT")
    assert promoted_markets({}, "binance", "BTC/USDT") == (("binance", "BTC/USDT"),)
    with pytest.raises(ValueError, match="name its market with --exchange and --symbol"):
        promoted_markets({}, None, None)
    one = {"markets": [{"exchange": "binance", "symbol": "BTC/USDT"}]}
    assert promoted_markets(one, "binance", "BTC/USDT") == (("binance", "BTC/USDT"),)
    with pytest.raises(ValueError, match="--exchange kraken"):
        promoted_markets(one, "kraken", "BTC/USDT")
