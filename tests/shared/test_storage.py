"""Storage against a real PostgreSQL: migrations, COPY writer, a server restart during writes."""

from __future__ import annotations

import asyncio
import datetime as dt
import warnings
from pathlib import Path

import pytest

from shared.config import StorageSettings
from shared.embedded import EmbeddedPostgres
from shared.storage import CopyWriter, Database, migrations, ns_to_datetime
from shared.storage.db import retrying

pytestmark = pytest.mark.integration

TRADE_COLUMNS = ["exchange", "symbol", "trade_id", "price", "amount", "side", "ts", "recv_ts"]
T0 = 1_700_000_000_000_000_000


def trade_rows(exchange: str, n: int, start: int = 0) -> list[tuple[object, ...]]:
    return [
        (
            exchange,
            "BTC/USDT",
            str(i),
            100.0 + i,
            0.01,
            "buy",
            ns_to_datetime(T0 + i * 1_000_000),
            ns_to_datetime(T0),
        )
        for i in range(start, start + n)
    ]


async def test_migrations_apply_once_and_create_the_design_tables(db):
    assert await db.migrate() == []  # the fixture already applied them: a second run is a no-op
    names = {r["name"] for r in await db.fetch("SELECT name FROM schema_migrations")}
    assert names == {name for name, _ in migrations()}
    tables = {r["relname"] for r in await db.fetch("SELECT relname FROM pg_class WHERE relkind IN ('r', 'p')")}
    for table in ("trades", "orders", "fills", "balances", "ledger", "positions", "risk_events", "policies",
                  "book_snapshots"):  # fmt: skip
        assert table in tables
    partitioned = {r["relname"] for r in await db.fetch("SELECT relname FROM pg_class WHERE relkind = 'p'")}
    assert {"trades", "fills", "risk_events", "book_snapshots"} <= partitioned
    this_month = dt.datetime.now(dt.UTC).strftime("%Y%m")
    assert f"trades_{this_month}" in tables


async def test_concurrent_migrators_do_not_collide(database_url):
    dbs = [await Database.connect(database_url, StorageSettings(pool_max=2)) for _ in range(3)]
    try:
        results = await asyncio.gather(*(d.migrate() for d in dbs))
        assert results == [[], [], []]
    finally:
        for d in dbs:
            await d.close()


async def test_copy_writer_is_idempotent_and_routes_to_partitions(db, uid):
    writer = CopyWriter(db, "trades", TRADE_COLUMNS)
    rows = trade_rows(f"ex{uid}", 25_000)
    assert await writer.write(rows) == 25_000
    assert await writer.write(rows[:100]) == 0  # a retried batch is not stored twice
    assert await writer.write(trade_rows(f"ex{uid}", 10, start=25_000)) == 10
    count = await db.fetch("SELECT count(*) AS n, sum(price) AS s FROM trades WHERE exchange = $1", f"ex{uid}")
    assert count[0]["n"] == 25_010
    assert count[0]["s"] == pytest.approx(sum(100.0 + i for i in range(25_010)))


def test_copy_writer_rejects_non_identifiers(db):
    with pytest.raises(ValueError, match="identifiers"):
        CopyWriter(db, "trades; drop table trades", ["a"])


async def test_postgres_restart_during_writes_loses_nothing(tmp_path: Path):
    server = EmbeddedPostgres(tmp_path / "pg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        url = server.start()
    db = await Database.connect(url, StorageSettings(retry_max_s=30, copy_batch=500, pool_max=2))
    try:
        await db.migrate()
        writer = CopyWriter(db, "trades", TRADE_COLUMNS)
        batches = [trade_rows("restart", 500, start=i * 500) for i in range(60)]

        async def write_all() -> None:
            for batch in batches:
                await writer.write(batch)
                await asyncio.sleep(0.01)

        async def restart() -> None:
            await asyncio.sleep(0.15)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, server.stop, "immediate")  # a crash, not a clean shutdown
            await asyncio.sleep(0.5)
            await loop.run_in_executor(None, server.start)

        await asyncio.gather(write_all(), restart())
        assert writer.retries > 0, "the restart happened after the writes; the test proved nothing"
        rows = await db.fetch("SELECT count(DISTINCT trade_id) AS n, count(*) AS total FROM trades")
        assert rows[0]["n"] == rows[0]["total"] == 30_000
    finally:
        await db.close()
        server.stop()


async def test_a_statement_picked_as_a_deadlocks_victim_runs_again(db, database_url, uid):
    """Two transactions lock two rows in opposite orders (the executor's report flush and its order rows
    once did, and the order rows of a policy's first two orders were never written): PostgreSQL aborts
    one. `Database.execute` runs its statement again, so it succeeds once the other commits."""
    import asyncpg

    table = f"deadlock_{uid}"
    await db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL)")
    await db.execute(f"INSERT INTO {table} VALUES (1, 0), (2, 0)")
    other = await asyncpg.connect(database_url)
    try:
        await other.execute("SET deadlock_timeout = '30s'")  # the victim is the statement below, never this one
        holding = other.transaction()
        await holding.start()
        await other.execute(f"UPDATE {table} SET v = v + 10 WHERE id = 2")
        ours = asyncio.create_task(  # row 1, then (after a pause) row 2, which the other transaction holds
            db.execute(
                f"DO $$ BEGIN UPDATE {table} SET v = v + 1 WHERE id = 1; PERFORM pg_sleep(1);"
                f" UPDATE {table} SET v = v + 1 WHERE id = 2; END $$"
            )
        )
        written = (  # ours has a transaction id: its first UPDATE is done and it holds row 1
            "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.query LIKE $1"
            " AND a.query NOT LIKE '%pg_locks%' AND l.locktype = 'transactionid' AND l.granted"
        )
        deadline = asyncio.get_running_loop().time() + 30
        while not await db.fetch(written, f"%{table} SET v = v + 1 WHERE id = 1;%"):
            assert asyncio.get_running_loop().time() < deadline, "our statement never started"
            await asyncio.sleep(0.01)
        await other.execute(f"UPDATE {table} SET v = v + 10 WHERE id = 1")  # waits for ours: the deadlock
        await holding.commit()
        await asyncio.wait_for(ours, 30)
    finally:
        await other.close()
    rows = dict(await db.fetch(f"SELECT id, v FROM {table} ORDER BY id"))
    await db.execute(f"DROP TABLE {table}")
    assert rows == {1: 11, 2: 11}  # both transactions' updates, ours run twice but committed once


async def test_a_connection_the_pool_could_not_reset_after_the_server_dropped_it_is_tried_again():
    """A chaos run's risk service died of this, raised by asyncpg's pool while PostgreSQL was killed -9
    (releasing a connection whose statement the server never finished): the statement is run again on a
    new connection, like any other lost connection, within ``storage.retry_max_s``."""
    import asyncpg

    tries = []

    async def statement() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise asyncpg.exceptions.InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress"
            )
        return "UPDATE 1"

    assert await retrying(statement, "save the peaks", retry_max_s=5) == "UPDATE 1"
    assert len(tries) == 2
