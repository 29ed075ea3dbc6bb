"""`make portfolio-demo` in a running `tradewind up --mode replay`: a portfolio policy trained (tiny budget) on
the shipped sample's Binance spot + USD-M BTC/USDT captures, promoted by hand through the CLI, trades both
venues on paper; `tradewind status --json` shows its positions per venue and the book names both markets.

A plumbing check, not a performance one: the policy is trained on ~30 s of market."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.test_durable_halt_stack import _gt, start_stack, tradewind, until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VENUES = ("binance", "binance_futures")
TINY = (  # a few hundred env steps: enough to write a policy the executor loads, not to learn anything
    *("--timesteps", "256", "--seed", "0"),
    *("--set", "training.train_batch_size_per_learner=256", "--set", "training.minibatch_size=64"),
    *("--set", "training.num_epochs=1", "--set", "env.episode_len=64"),
)


async def test_a_portfolio_policy_promoted_by_hand_trades_spot_and_usdm_in_replay(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env |= {
        "TRADEWIND_VAR_DIR": str(tmp_path / "var"),
        "TRADEWIND_TRAINER__POLICY_DIR": str(tmp_path / "policies"),
        "TRADEWIND_METRICS__ENABLED": "false",
        "TRADEWIND_EXECUTOR__STRATEGY_ENABLED": "false",  # every order, fill and position is the policy's
        "TRADEWIND_ARBITRAGE__ENABLED": "false",
        "RAY_AUTH_MODE": "disabled",
    }
    data, checkpoint = tmp_path / "data", tmp_path / "policies" / "portfolio-demo"
    started = time.monotonic()
    up = start_stack(env)
    conn: asyncpg.Connection | None = None
    try:
        # the policy trains while the stack starts (the same commands as `make portfolio-demo`)
        subprocess.run(
            [sys.executable, "-m", "services.trainer.portfolio_demo", str(data)], env=env, check=True, timeout=60
        )
        trained = tradewind(env, "train", "--algo", "ppo", "--data", str(data), "--out", str(checkpoint), *TINY)
        assert trained["markets"] == ["binance:BTC/USDT", "binance_futures:BTC/USDT"]

        db_url = tmp_path / "var" / "run" / "database.url"
        await until("the stack's database", db_url.exists, 120)
        conn = await asyncpg.connect(db_url.read_text().strip())

        async def venues(sql: str) -> set[str]:
            assert conn is not None
            try:
                return {r[0] for r in await conn.fetch(sql)}
            except asyncpg.UndefinedTableError:
                return set()

        async def on_both(sql: str) -> bool:
            return set(VENUES) <= await venues(sql)

        await until("the stack's migrations", lambda: _gt(_policies_table(conn), 0), 60)
        promoted = tradewind(env, "policy", "promote", str(checkpoint), "--json")
        assert promoted["promotion"] == "manual"
        assert {m["exchange"] for m in promoted["markets"]} == set(VENUES)

        orders = "SELECT DISTINCT exchange FROM orders WHERE strategy = 'rl'"
        await until("rl orders on both venues", lambda: on_both(orders), 120)
        fills = "SELECT DISTINCT f.exchange FROM fills f JOIN orders o USING (client_order_id) WHERE o.strategy = 'rl'"
        await until("rl fills on both venues", lambda: on_both(fills), 60)
        held = "SELECT DISTINCT exchange FROM positions WHERE amount <> 0"
        await until("positions on both venues", lambda: on_both(held), 60)

        status = tradewind(env, "status", "--json")
        assert {p["exchange"] for p in status["positions"] if p["amount"]} >= set(VENUES)
        (book,) = status["policies_active"]
        assert book["id"] == promoted["policy_id"]
        assert {(m["exchange"], m["symbol"]) for m in book["markets"]} == {(v, "BTC/USDT") for v in VENUES}
        assert set(status["fills_by_strategy"]) == {"rl"}
        per_venue = await conn.fetch(
            "SELECT o.exchange, count(DISTINCT o.client_order_id) AS orders, count(f.fill_id) AS fills"
            " FROM orders o LEFT JOIN fills f USING (client_order_id) WHERE o.strategy = 'rl' GROUP BY 1"
        )
        print(
            f"portfolio demo after {time.monotonic() - started:.0f}s:",
            {r["exchange"]: (r["orders"], r["fills"]) for r in per_venue},
        )
    finally:
        if conn is not None:
            await conn.close()
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)


async def _policies_table(conn: asyncpg.Connection | None) -> int:
    assert conn is not None
    return int(await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename = 'policies'"))
