"""A halt outlives the executor: a restarted executor starts halted, even when Redis lost the halt set."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.executor.gateway import PaperGateway
from services.executor.service import Executor
from services.risk.cli import halt, resume
from shared import halts
from shared.bus import connect_redis
from shared.config import Settings
from shared.embedded import EmbeddedRedis, free_port
from shared.paper import PaperExchange
from shared.paper.recorded import read_binance_capture
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, RiskControl, decode, encode, streams
from shared.signing import OPERATOR
from shared.storage import Database
from tests.control import CLI_ENV, KEYS, SIGNERS
from tests.late_redis import start_after_first_try

CAPTURE = Path(__file__).parent.parent / "data" / "executor" / "binance_btcusdt_20240809_20s.gz"
SNAPSHOT = next(m for m in read_binance_capture(CAPTURE) if isinstance(m, BookUpdate))

pytestmark = pytest.mark.integration


async def outcome(redis, cid: str, timeout: float = 20.0) -> OrderEvent:  # type: ignore[no-untyped-def]
    """The first final event (rejected or filled) of ``cid`` on orders:events."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, fields in await redis.xrange(streams.ORDERS_EVENTS):
            for m in decode(fields[streams.FIELD.encode()]):
                if isinstance(m, OrderEvent) and m.client_order_id == cid and m.status in ("rejected", "filled"):
                    return m
        await asyncio.sleep(0.02)
    raise AssertionError(f"no outcome for {cid} within {timeout}s")


class Run:
    """One executor process's lifetime, in-process: start, feed a book, stop."""

    def __init__(self, settings: Settings, redis, db: Database, name: str) -> None:  # type: ignore[no-untyped-def]
        self.redis = redis
        self.exchange = PaperExchange(settings.executor.venues, seed=1, id_prefix=f"{name}-")
        self.executor = Executor(settings, redis, db, PaperGateway(self.exchange), run_id=name)

    async def __aenter__(self) -> Run:
        self.task = asyncio.create_task(self.executor.run())
        await asyncio.wait_for(self.executor.ready.wait(), 20)
        await self.redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(SNAPSHOT)})
        deadline = time.monotonic() + 20
        while ("binance", "BTC/USDT") not in self.executor.guard.mids:
            assert time.monotonic() < deadline, "the executor never applied the book snapshot"
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.executor.stop()
        await self.task


def buy(cid: str) -> OrderIntent:
    return OrderIntent(cid, "binance", "BTC/USDT", "buy", "market", 0.001, time.time_ns())


async def test_a_halt_survives_an_executor_restart_and_a_redis_that_lost_it(isolated: tuple[str, str]) -> None:
    dsn, rurl = isolated
    redis = connect_redis(rurl)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    settings = Settings(
        mode="replay",
        bus={"block_ms": 50, "claim_idle_ms": 1000, "claim_interval_ms": 200},
        executor={"strategy_enabled": False, "rl_enabled": False, "market_data_venues": ["binance"]},
        control=KEYS,
    )
    env = {"REDIS_URL": rurl, "DATABASE_URL": dsn, **CLI_ENV}
    cli = CliRunner()
    try:
        async with Run(settings, redis, db, "first") as run:
            await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(buy("before"))})
            assert (await outcome(redis, "before")).status == "filled"
            result = await asyncio.to_thread(cli.invoke, halt, ["--reason", "drill"], env=env)
            assert result.exit_code == 0, result.output
            deadline = time.monotonic() + 10
            while not run.executor.guard.halted:  # the running executor follows the stream
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)

        # A new process: the halt entry was consumed and acked by the first one, so only the stored set says so.
        async with Run(settings, redis, db, "second"):
            await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(buy("while-halted"))})
            assert (await outcome(redis, "while-halted")).reason == "risk.halted"

        await redis.delete(streams.HALTS)  # Redis restarted without its data: PostgreSQL still knows
        async with Run(settings, redis, db, "third") as run:
            assert run.executor.guard.halted == "drill"
            await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(buy("still-halted"))})
            assert (await outcome(redis, "still-halted")).reason == "risk.halted"
            result = await asyncio.to_thread(cli.invoke, resume, ["--reason", "drill over"], env=env)
            assert result.exit_code == 0, result.output
            deadline = time.monotonic() + 10
            while run.executor.guard.halted:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            await redis.xadd(streams.ORDERS_INTENTS, {streams.FIELD: encode(buy("after"))})
            assert (await outcome(redis, "after")).status == "filled"

        async with Run(settings, redis, db, "fourth") as run:  # the resume is durable too
            assert run.executor.guard.halted == ""
        assert await db.fetch("SELECT id FROM halts") == []
    finally:
        await db.close()
        await redis.aclose()


async def test_an_executor_starting_while_redis_is_down_waits_for_it_and_starts_halted(
    isolated: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarting just as the executor starts used to end it with a ConnectionError before it had
    loaded the halts; now it waits for Redis, then starts halted from PostgreSQL's copy of the halt set."""
    dsn, rurl = isolated
    seeding = connect_redis(rurl)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    drill = RiskControl("halt", time.time_ns(), reason="drill", issued_by="cli:ops@host", cause="human")
    await halts.send(seeding, [drill], signer=SIGNERS[OPERATOR], maxlen=10_000, db=db)
    await seeding.aclose()
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())  # not started yet
    redis = connect_redis(server.url)
    settings = Settings(
        mode="replay",
        bus={"block_ms": 50, "claim_idle_ms": 1000, "claim_interval_ms": 200},
        executor={"strategy_enabled": False, "rl_enabled": False, "market_data_venues": ["binance"]},
        control=KEYS,
    )
    caplog.set_level(logging.WARNING, logger="shared.bus")
    run = Run(settings, redis, db, "waits")
    task = asyncio.create_task(run.executor.run())
    try:
        await start_after_first_try(server, task, caplog, "executor: load the halts")
        await asyncio.wait_for(run.executor.ready.wait(), 20)
        assert run.executor.guard.halted == "drill"
    finally:
        run.executor.stop()
        await task
        await redis.aclose()
        await db.close()
        server.stop()


async def test_an_executor_whose_consumer_dies_exits_non_zero_instead_of_stalling(isolated: tuple[str, str]) -> None:
    """A consumer that cannot run (here: its stream key holds a string, WRONGTYPE) ends the executor
    process with a non-zero status, so the supervisor restarts it; it used to wait forever, looking alive.
    (In a process of its own: CPython 3.11.7 leaves its AST recursion counter off after this failure.)"""
    dsn, rurl = isolated
    redis = connect_redis(rurl)
    await redis.set(streams.ORDERS_INTENTS, "not a stream")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEWIND_")}
    env |= {
        "REDIS_URL": rurl,
        "DATABASE_URL": dsn,
        "TRADEWIND_MODE": "replay",
        "TRADEWIND_METRICS__ENABLED": "false",
        "TRADEWIND_EXECUTOR__STRATEGY_ENABLED": "false",
        "TRADEWIND_EXECUTOR__RL_ENABLED": "false",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.executor",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
        await redis.aclose()
    assert proc.returncode == 1, err.decode()[-2000:]
    assert "background task orders:intents failed" in err.decode()
