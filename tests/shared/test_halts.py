"""Who lifts which halt (shared.halts): humans lift their own, a drawdown only with --force, a feed never."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from shared import halts
from shared.halts import HaltSet
from shared.schemas import RiskControl, decode, streams
from shared.signing import OPERATOR
from shared.storage import Database
from tests.control import SIGNERS

HUMAN = "cli:ops@host"


def halt(exchange: str | None = None, cause: str = "", by: str = HUMAN, reason: str = "r") -> RiskControl:
    return RiskControl("halt", 1, reason=reason, exchange=exchange, issued_by=by, cause=cause)


def resume(exchange: str | None = None, cause: str = "", by: str = HUMAN, force: bool = False) -> RiskControl:
    return RiskControl("resume", 2, reason="ok", exchange=exchange, issued_by=by, cause=cause, force=force)


def ids(s: HaltSet) -> set[str]:
    return {h.id for h in s}


def test_a_human_resume_lifts_human_halts_only() -> None:
    s = HaltSet()
    for c in (
        halt(),
        halt("kraken"),
        halt(cause="drawdown", by="risk"),
        halt("okx", cause="feed", by="risk"),
        halt("okx", cause="reconcile", by="executor"),
    ):
        assert s.apply(c).added
    assert not s.apply(halt()).added  # a repeat adds nothing (and so cancels nothing)
    assert s.apply(resume("kraken")).removed == ("human:kraken",)
    assert s.apply(resume()).removed == ("human:*",)
    assert ids(s) == {"drawdown:*", "feed:okx", "reconcile:okx"}
    assert s.reason(None) == "r" and s.reason("okx") == "r; r"


def test_force_lifts_drawdown_and_reconcile_never_a_feed_halt() -> None:
    s = HaltSet()
    for c in (halt(cause="drawdown", by="risk"), halt("okx", cause="feed", by="risk"), halt("okx", cause="reconcile")):
        s.apply(c)
    assert not s.apply(resume("okx", force=False))
    assert set(s.apply(resume(force=True)).removed) == {"drawdown:*", "reconcile:okx"}
    assert ids(s) == {"feed:okx"}
    assert s.apply(resume("okx", cause="feed", by="risk")).removed == ("feed:okx",)  # its issuer, cause gone
    assert not len(s)


@pytest.mark.integration
async def test_send_writes_the_stream_and_the_set_together_and_postgres_backs_redis(
    redis: Redis, db: Database, uid: str
) -> None:
    venue = f"v{uid}"
    before = await redis.xlen(streams.RISK_CONTROL)
    await halts.send(redis, [halt(venue, reason=f"drill {uid}")], signer=SIGNERS[OPERATOR], maxlen=10_000, db=db)
    assert await redis.xlen(streams.RISK_CONTROL) == before + 1
    (_, fields), *_ = await redis.xrevrange(streams.RISK_CONTROL, count=1)
    assert decode(fields[streams.FIELD.encode()])[0].exchange == venue  # type: ignore[union-attr]
    assert (await halts.load(redis)).reason(venue) == f"drill {uid}"
    saved = await redis.hgetall(streams.HALTS)
    try:
        await redis.delete(streams.HALTS)  # Redis lost its data
        assert (await halts.load(redis)).reason(venue) == ""
        assert (await halts.load(redis, db)).reason(venue) == f"drill {uid}"
        # lifts it in both stores
        await halts.send(redis, [resume(venue)], signer=SIGNERS[OPERATOR], maxlen=10_000, db=db)
        assert (await halts.load(redis, db)).reason(venue) == ""
        assert not await db.fetch("SELECT id FROM halts WHERE exchange = $1", venue)
    finally:
        others = {k: v for k, v in saved.items() if venue.encode() not in k}
        if others:
            await redis.hset(streams.HALTS, mapping=others)
