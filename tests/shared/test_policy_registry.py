"""The policy registry (shared.storage.policies) as `tradewind policy list` shows it: where each policy
came from, whether it trades now, and why (not)."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from services.trainer.cli import policy
from shared.config import StorageSettings
from shared.storage import Database
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
