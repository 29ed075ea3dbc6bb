"""A restarted risk service remembers: holdings, fills already counted, drawdown peaks and halts come
from PostgreSQL (and the halt set), not from an empty start; live, it refuses to start blind."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from services.risk import service as risk_service
from shared import halts
from shared.bus import connect_redis
from shared.config import Settings
from shared.embedded import EmbeddedRedis, free_port
from shared.schemas import BookUpdate, Fill, OrderEvent, RiskControl, decode, encode, streams
from shared.signing import OPERATOR, RISK
from shared.storage import Database
from tests.control import KEYS, SIGNERS
from tests.late_redis import start_after_first_try

pytestmark = pytest.mark.integration
DAY_NS = 86_400 * 1_000_000_000


def settings(dsn: str, rurl: str, **over: Any) -> Settings:
    return Settings(
        redis_url=rurl,
        database_url=dsn,
        bus={"block_ms": 50, "claim_idle_ms": 1000, "claim_interval_ms": 200},
        risk={"heartbeat_s": 0.05, "market_data_venues": ["binance"], "stale_after_s": 60.0, **over},
        control=KEYS,
    )


async def state_where(redis: Redis, ok: Any, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        raw = await redis.get(streams.RISK_STATE)
        state = json.loads(raw) if raw else None
        if state is not None and ok(state):
            return state
        assert time.monotonic() < deadline, f"risk state never matched: {state}"
        await asyncio.sleep(0.02)


async def groups_exist(redis: Redis, names: list[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for name in names:
        while not (await redis.exists(name) and await redis.xinfo_groups(name)):
            assert time.monotonic() < deadline, f"the risk service never joined {name}"
            await asyncio.sleep(0.02)


async def seed(db: Database, redis: Redis) -> None:
    """What an earlier run left: spot and cross-margin wallets (a BTC short), one fill, peaks, a drawdown halt."""
    rows = [("spot", "USDT", 10_000, 0), ("spot", "BTC", 1, 0), ("cross", "USDT", 5_000, 0), ("cross", "BTC", 0, 0.5)]
    for wallet, asset, free, borrowed in rows:
        await db.execute(
            "INSERT INTO balances (exchange, wallet, asset, free, borrowed) VALUES ('binance', $1, $2, $3, $4)",
            wallet,
            asset,
            free,
            borrowed,
        )
    await db.execute(
        "INSERT INTO fills (exchange, fill_id, client_order_id, symbol, side, price, amount, fee, fee_asset,"
        " liquidity, ts) VALUES ('binance', 'f-old', 'o-old', 'BTC/USDT', 'buy', 20000, 0.1, 10, 'USDT',"
        " 'taker', $1)",
        datetime.now(UTC),
    )
    await db.execute(
        "INSERT INTO risk_state (id, peak_total, peak_day, day) VALUES (1, 30000, 30000, $1)", time.time_ns() // DAY_NS
    )
    drawdown = RiskControl("halt", time.time_ns(), reason="total drawdown", issued_by="risk", cause="drawdown")
    await halts.send(redis, [drawdown], signer=SIGNERS[RISK], maxlen=10_000, db=db)


def fill_event(fill_id: str) -> OrderEvent:
    fill = Fill(fill_id, 20_000.0, 0.1, 10.0, "USDT", time.time_ns())
    return OrderEvent(f"o-{fill_id}", "binance", "BTC/USDT", "buy", "filled", time.time_ns(), fills=[fill])


def live(s: Settings) -> Settings:
    return s.model_copy(
        update={"mode": "live", "executor": Settings(executor={"live_venues": {"binance": {}}}).executor}
    )


@pytest.mark.parametrize("mode", ["paper", "live"])
async def test_restart_rebuilds_portfolio_peaks_and_halts(isolated: tuple[str, str], mode: str) -> None:
    """Paper: what earlier runs stored. Live: the venue's wallets as the executor stored them at its start —
    a drawdown is seen on total equity (margin debt included), where an empty start saw none."""
    dsn, rurl = isolated
    redis = connect_redis(rurl)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    await seed(db, redis)
    stopping = asyncio.Event()
    config = settings(dsn, rurl) if mode == "paper" else live(settings(dsn, rurl))
    task = asyncio.create_task(risk_service.run(config, stopping))
    try:
        book = BookUpdate("binance", "BTC/USDT", 1, 1, 1, [(19_999.0, 1.0)], [(20_001.0, 1.0)], snapshot=True)
        await state_where(redis, lambda s: s["halted"] == "total drawdown")  # the service is up, still halted
        await groups_exist(redis, [streams.md_book("binance"), streams.ORDERS_EVENTS])  # "$" groups: read from now
        await redis.xadd(streams.md_book("binance"), {streams.FIELD: encode(book)})
        # 10,000 + 1 BTC + 5,000 in margin - a 0.5 BTC debt, at 20,000: 25,000, 1/6 below the stored peak of 30,000
        state = await state_where(redis, lambda s: s["equity"] == 25_000.0)
        assert state["drawdown_total"] == pytest.approx(1 / 6)
        # a fill counted before the restart, delivered again, counts once; a new one moves equity by its fee
        await redis.xadd(streams.ORDERS_EVENTS, {streams.FIELD: encode([fill_event("f-old"), fill_event("f-new")])})
        await state_where(redis, lambda s: s["equity"] == 24_990.0)
        # a plain human resume does not lift the drawdown halt; the service re-asserts it on risk:control
        human = RiskControl("resume", time.time_ns(), reason="oops", issued_by="cli:ops@host", cause="human")
        await halts.send(redis, [human], signer=SIGNERS[OPERATOR], maxlen=10_000, db=db)
        after = (await redis.xrevrange(streams.RISK_CONTROL, count=1))[0][0]
        deadline = time.monotonic() + 10
        while True:
            entries = await redis.xrange(streams.RISK_CONTROL, min=f"({after.decode()}")
            msgs = [m for _, f in entries for m in decode(f[streams.FIELD.encode()])]
            if any(isinstance(m, RiskControl) and m.action == "halt" and m.cause == "drawdown" for m in msgs):
                break
            assert time.monotonic() < deadline, "the drawdown halt was not re-asserted"
            await asyncio.sleep(0.02)
        assert (await halts.load(redis, db)).reason(None) == "total drawdown"
        stopping.set()
        await task
        (peaks,) = await db.fetch("SELECT peak_total FROM risk_state WHERE id = 1")
        assert peaks["peak_total"] == 30_000.0  # saved every tick, and not lowered
    finally:
        stopping.set()
        await task
        await db.close()
        await redis.aclose()


async def test_live_risk_refuses_to_start_without_the_venues_balances(isolated: tuple[str, str]) -> None:
    dsn, rurl = isolated
    s = live(settings(dsn, rurl, live_balances_wait_s=0.3))
    with pytest.raises(SystemExit, match="no venue balances stored yet"):
        await risk_service.run(s, asyncio.Event())


async def test_a_risk_service_starting_while_redis_is_down_waits_for_it(
    isolated: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarting just as risk starts (a kill -9 in the chaos run) used to end the service with a
    ConnectionError: a restart that the supervisor, not Redis, had to mend. Now it waits, then takes over
    the halts in force (here from PostgreSQL: the new Redis has none)."""
    dsn, rurl = isolated
    seeding = connect_redis(rurl)
    db = await Database.connect(dsn, Settings().storage)
    await db.migrate()
    await seed(db, seeding)  # the drawdown halt is stored in PostgreSQL too
    await seeding.aclose()
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())  # not started yet
    stopping = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="shared.bus")
    task = asyncio.create_task(risk_service.run(settings(dsn, server.url), stopping))
    redis = connect_redis(server.url)
    try:
        await start_after_first_try(server, task, caplog, "risk: load the halts")
        await state_where(redis, lambda s: s["halted"] == "total drawdown")
        assert not task.done()
    finally:
        stopping.set()
        await task
        await redis.aclose()
        await db.close()
        server.stop()
