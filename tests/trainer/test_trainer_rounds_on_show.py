"""Every online round on show: `tradewind policy list --json` gives each trial's held-out figures beside the
champion's and each baseline's and the verdict; each round's verdict is published on `policy:updates`; a
looped sample is detected, its repeated bars never trained or judged on, and the registry says so."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from services.trainer.loops import LoopGuard
from services.trainer.policy_cli import policy
from services.trainer.service import OnlineTrainer
from shared.bus import RedisBus, connect_redis
from shared.config import StorageSettings
from shared.rl.bars import NS_PER_S
from shared.schemas import PolicyVerdict, Trade, decode, streams
from shared.storage import Database
from shared.storage.policies import PolicyRegistry

from .test_trainer_service import _portfolio_markets, _portfolio_settings, _portfolio_trades, constant_portfolio_policy

LOOP_S = 3_600  # a replay's second pass arrives this much later (receive time) with the same exchange times


async def _listing(dsn: str) -> dict[str, dict[str, Any]]:
    result = await asyncio.to_thread(CliRunner().invoke, policy, ["list", "--json"], env={"DATABASE_URL": dsn})
    assert result.exit_code == 0, result.output
    return {r["id"]: r for r in json.loads(result.stdout)}


async def _verdicts(redis: Any) -> list[PolicyVerdict]:
    entries = await redis.xrange(streams.POLICY_UPDATES)
    found = [m for _, fields in entries for m in decode(fields.get(b"d") or fields.get("d"))]
    return [m for m in found if isinstance(m, PolicyVerdict)]


def _looped(trades: list[Trade]) -> list[Trade]:
    """The same trades again, as a looped replay sends them: same exchange times, later receive times."""
    shift = LOOP_S * NS_PER_S
    return [Trade(t.exchange, t.symbol, t.trade_id, t.price, t.amount, t.side, t.ts, t.recv_ts + shift) for t in trades]


@pytest.mark.integration
async def test_policy_list_shows_each_round_beside_the_champion_and_baselines(
    isolated: tuple[str, str], uid: str, tmp_path: Path
) -> None:
    dsn, redis_url = isolated
    db = await Database.connect(dsn, StorageSettings())
    await db.migrate()
    redis = connect_redis(redis_url)
    markets = _portfolio_markets(uid)
    settings = _portfolio_settings(tmp_path, markets)
    registry = PolicyRegistry(db, RedisBus(redis, settings.bus))
    trainer = OnlineTrainer(settings, registry, isolate=False, portfolio_train_fn=constant_portfolio_policy)
    trades = _portfolio_trades(markets, 1_250)  # the second round needs a held-out tail of new bars
    try:
        trainer.on_trades([t for t in trades if int(t.trade_id) < 900])
        first = await trainer.run_round()
        assert first is not None
        (first_id,) = first["trials"]
        rows = await _listing(dsn)
        row = rows[first_id]
        assert row["source"] == "online" and row["reason"] == first["reason"]
        assert row["status"] == ("promoted" if first["promoted"] else "rejected")
        assert row["champion"] is None  # no champion for this market set yet
        assert set(row["baselines"]) >= {"buy_and_hold", "flat", "momentum", "best_single_market"}
        assert all(isinstance(b["sharpe"], float) for b in row["baselines"].values())
        assert isinstance(row["figures"]["sharpe"], float) and "baselines" not in row["figures"]
        (v1,) = await _verdicts(redis)
        assert (v1.round, v1.trials, v1.best, v1.promoted, v1.reason) == (
            1,
            [first_id],
            first_id,
            bool(first["promoted"]),
            first["reason"],
        )
        assert v1.sharpe == row["figures"]["sharpe"] and v1.champion_sharpe is None
        assert v1.baselines == {n: b["sharpe"] for n, b in row["baselines"].items()}

        if not first["promoted"]:  # a champion for the next round to be judged beside
            stored = (await db.fetch("SELECT checkpoint_uri, metrics FROM policies WHERE id = $1", first_id))[0]
            await registry.promote(first_id, "ppo", stored["checkpoint_uri"], {}, markets=markets)
        trainer.on_trades([t for t in trades if int(t.trade_id) >= 900])  # new bars: a new round may judge
        second = await trainer.run_round()
        assert second is not None
        (second_id,) = second["trials"]
        rows = await _listing(dsn)
        beside = rows[second_id]["champion"]
        assert beside is not None and beside["id"] == first_id and isinstance(beside["sharpe"], float)
        assert rows[second_id]["status"] in ("promoted", "rejected") and rows[second_id]["reason"] == second["reason"]
        v2 = (await _verdicts(redis))[-1]
        assert v2.round == 2 and v2.best == second_id and v2.champion_sharpe == beside["sharpe"]
        table = await asyncio.to_thread(CliRunner().invoke, policy, ["list"], env={"DATABASE_URL": dsn})
        assert table.exit_code == 0 and f"{beside['sharpe']:.3f}" in table.output and "momentum" in table.output
    finally:
        await redis.aclose()
        await db.close()


@pytest.mark.integration
async def test_a_looped_sample_is_never_judged_again_and_policy_list_says_so(
    isolated: tuple[str, str], uid: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dsn, redis_url = isolated
    db = await Database.connect(dsn, StorageSettings())
    await db.migrate()
    redis = connect_redis(redis_url)
    markets = _portfolio_markets(uid)
    settings = _portfolio_settings(tmp_path, markets)
    trainer = OnlineTrainer(
        settings,
        PolicyRegistry(db, RedisBus(redis, settings.bus)),
        isolate=False,
        portfolio_train_fn=constant_portfolio_policy,
    )
    first_pass = _portfolio_trades(markets, 900)
    caplog.set_level(logging.WARNING, logger="services.trainer")
    try:
        trainer.on_trades(first_pass)
        have = {m: len(trainer.markets[m]) for m in markets}
        for _ in range(2):  # the sample plays again, twice: not one of its bars is taken
            trainer.on_trades(_looped(first_pass))
        assert {m: len(trainer.markets[m]) for m in markets} == have
        assert trainer.loops.loops[markets[0]].dropped == 2 * 900

        summary = await trainer.run_round()  # on the first pass only
        assert summary is not None
        (trial,) = summary["trials"]
        row = (await _listing(dsn))[trial]
        assert "the sample looped" in row["reason"] and row["reason"].startswith(summary["reason"])
        assert len(row["figures"]["sample"]) == 2  # one note per market of the set
        assert "the sample looped" in (await _verdicts(redis))[-1].notes[0]

        assert await trainer.run_round() is None  # the same bars again: refused
        assert await trainer.run_round() is None
        reason = (await _listing(dsn))[trial]["reason"]
        assert reason.count("no later round judges its bars again") == 1
        assert len(await _verdicts(redis)) == 1  # no verdict on repeated bars
        looped = [r for r in caplog.records if "looped" in r.getMessage() and "rounds keep" in r.getMessage()]
        assert len(looped) == len(markets)  # logged once per market, however often it loops
        refused = [r for r in caplog.records if "no later round judges" in r.getMessage()]
        assert len(refused) == 1
    finally:
        await redis.aclose()
        await db.close()


def test_the_loop_guard_tolerates_reordering_and_catches_a_restart() -> None:
    guard = LoopGuard(tolerance_s=5.0)
    key = ("bitstamp", "BTC/USD")
    s = NS_PER_S
    assert all(guard.admit(key, t * s) for t in (100, 101, 99, 97, 102))  # out of order within 5 s: kept
    assert guard.notes([key]) == []
    assert guard.admit(("other", "X/Y"), 10 * s)  # another market has its own clock
    assert not guard.admit(key, 96 * s)  # 6 s before the latest: the sample started again
    assert not guard.admit(key, 101 * s)  # from then on, nothing seen before passes, even within 5 s
    assert not guard.admit(key, 102 * s)
    assert guard.admit(key, 103 * s)  # a trade newer than any seen is new
    assert guard.loops[key].dropped == 3
    assert "went back from" in guard.notes([key, ("other", "X/Y")])[0] and len(guard.notes([key])) == 1


@pytest.mark.integration
async def test_successive_rounds_judge_held_out_windows_that_never_overlap(
    isolated: tuple[str, str], uid: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dsn, redis_url = isolated
    db = await Database.connect(dsn, StorageSettings())
    await db.migrate()
    redis = connect_redis(redis_url)
    markets = _portfolio_markets(uid)
    settings = _portfolio_settings(tmp_path, markets)  # a window of 1,000 bars, a quarter held out
    trainer = OnlineTrainer(
        settings,
        PolicyRegistry(db, RedisBus(redis, settings.bus)),
        isolate=False,
        portfolio_train_fn=constant_portfolio_policy,
    )
    day = _portfolio_trades(markets, 1_400)
    caplog.set_level(logging.INFO, logger="services.trainer")
    try:
        trainer.on_trades([t for t in day if int(t.trade_id) < 900])
        first = await trainer.run_round()
        assert first is not None
        trainer.on_trades([t for t in day if 900 <= int(t.trade_id) < 1_100])
        assert await trainer.run_round() is None  # its held-out tail would reach back into judged bars: it waits
        assert any("its held-out tail would reach back" in r.getMessage() for r in caplog.records)
        trainer.on_trades([t for t in day if 1_100 <= int(t.trade_id) < 1_300])
        second = await trainer.run_round()
        assert second is not None
        rows = await _listing(dsn)
        (a,), (b,) = first["trials"], second["trials"]
        assert rows[b]["figures"]["from_ts"] > rows[a]["figures"]["to_ts"]  # a walk forward
        assert "no later round judges" not in (rows[a]["reason"] or "")  # waiting is not a refusal
        # a few more bars, then the sample loops: they will never make a held-out tail, and the list says why
        trainer.on_trades([t for t in day if int(t.trade_id) >= 1_300])
        trainer.on_trades(_looped([t for t in day if int(t.trade_id) < 1_300]))
        assert await trainer.run_round() is None
        reason = (await _listing(dsn))[b]["reason"]
        assert "the 100 bars after this round are too few" in reason and "the sample looped" in reason
    finally:
        await redis.aclose()
        await db.close()
