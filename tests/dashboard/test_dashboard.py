"""The dashboard over real Redis and PostgreSQL: JSON views (arbitrage opportunities, a policy's held-out
equity curve as an online round stores it), the token / Host / CSRF rules, halt and resume through the
signed path, the equity recorder, and the vendored uPlot's checksums."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import itertools
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from services.dashboard.control import Controls
from services.dashboard.equity import snapshot_rows
from services.dashboard.guard import CSRF_COOKIE, DashboardRefused, check_exposure
from services.dashboard.service import STATIC, create_app, export_streams
from services.trainer.data import load_bars
from services.trainer.evaluation import round_report, walk_forward
from services.trainer.policy import BASELINES
from services.trainer.rounds import train_and_evaluate_portfolio
from services.trainer.synth import lead_lag
from services.trainer.verdicts import trial_metrics
from shared import halts
from shared.bus import RedisBus
from shared.config import BusSettings, DashboardSettings, Settings
from shared.metrics import ServiceMetrics
from shared.rl.env_config import EnvConfig
from shared.rl.features import compute_features
from shared.schemas import Trade, decode, streams
from shared.sections.control import ControlSettings
from shared.signing import OPERATOR, check
from shared.storage.policies import PolicyRegistry
from tests.trainer.test_trainer_data import DATA
from tests.trainer.test_trainer_service import _portfolio_markets, _portfolio_settings, constant_portfolio_policy

KEYS = {"risk_key": "r" * 64, "operator_key": "o" * 64}


def test_off_loopback_without_a_token_is_refused():
    with pytest.raises(DashboardRefused, match="TRADEWIND_DASHBOARD__TOKEN"):
        check_exposure(DashboardSettings(host="0.0.0.0"))
    check_exposure(DashboardSettings(host="0.0.0.0", token=SecretStr("t")))
    check_exposure(DashboardSettings(host="127.0.0.1"))
    check_exposure(DashboardSettings(host="::1"))


def test_vendored_uplot_matches_its_checksums():
    folder = STATIC / "uplot"
    lines = (folder / "SHA256SUMS").read_text().split("\n")
    sums = dict(reversed(line.split()) for line in lines if line.strip())
    assert set(sums) == {"uPlot.iife.min.js", "uPlot.min.css"}
    for name, digest in sums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in (folder / "LICENSE").read_text() and "1.6.31" in (folder / "VERSION").read_text()


def test_equity_rows_total_and_per_venue():
    at = datetime.datetime.now(datetime.UTC)
    state = {"equity": 150.0, "venues": {"a": {"equity": 100.0, "realized_pnl": 1.0}, "b": {"equity": 50.0}}}
    assert snapshot_rows(state, at) == [
        (at, "*", 150.0, 1.0, 0.0),
        (at, "a", 100.0, 1.0, 0.0),
        (at, "b", 50.0, 0.0, 0.0),
    ]
    assert snapshot_rows({}, at) == []


@pytest.mark.integration
async def test_views_show_streams_records_and_the_equity_curve(redis, db, uid):
    stream = f"dash:{uid}"
    await RedisBus(redis, BusSettings()).publish(stream, Trade("x", "A/B", "1", 1.0, 1.0, "buy", 1, 1))
    await db.execute(
        "INSERT INTO orders (client_order_id, exchange, symbol, side, order_type, amount, status, strategy)"
        " VALUES ($1, 'binance', 'BTC/USDT', 'buy', 'market', 0.5, 'filled', $2)",
        f"cid-{uid}",
        f"s-{uid}",
    )
    venue = f"v{uid}"
    await db.execute("INSERT INTO equity_snapshots (ts, venue, equity) VALUES (now(), $1, 123.5)", venue)
    async with TestClient(TestServer(create_app(redis, db, DashboardSettings()))) as client:
        for page in ("overview", "strategies", "risk", "policies", "bus", "arbitrage"):
            response = await client.get(f"/{page}")
            assert response.status == 200 and f'data-page="{page}"' in await response.text()
            assert (await client.get(f"/api/page/{page}")).status == 200
        streams_ = await (await client.get("/api/streams")).json()
        assert any(s["name"] == stream and s["length"] == 1 for s in streams_)
        orders = await (await client.get("/api/orders", params={"strategy": f"s-{uid}"})).json()
        assert [o["client_order_id"] for o in orders] == [f"cid-{uid}"] and orders[0]["side"] == "buy"
        assert await (await client.get("/api/orders", params={"strategy": "nobody"})).json() == []
        curve = await (await client.get("/api/equity")).json()
        assert curve["series"][venue][-1] == 123.5 and len(curve["t"]) == len(curve["series"][venue])
        assert (await client.get("/api/nonsense")).status == 404
        assert (await client.get("/healthz")).status == 200
        async with client.get("/api/live", params={"page": "bus"}) as live:
            line = await live.content.readline()
            assert line.startswith(b"data: ") and "streams" in json.loads(line[6:])


@pytest.mark.integration
async def test_token_host_and_csrf_rules(redis):
    app = create_app(redis, None, DashboardSettings(token=SecretStr("s3cret")))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/api/streams")).status == 401
        assert (await client.get("/api/streams", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await client.get("/api/streams", headers={"Authorization": "Bearer s3cret"})).status == 200
        assert (await client.get("/api/balances?token=s3cret")).status == 400  # never in a URL
        page = await client.get("/overview", allow_redirects=False)
        assert page.status == 303 and page.headers["Location"] == "/login"
        evil = {"Host": "attacker.example:8080", "Authorization": "Bearer s3cret"}
        assert (await client.get("/api/streams", headers=evil)).status == 421  # DNS rebinding
        await client.get("/login")  # sets the csrf cookie
        csrf = client.session.cookie_jar.filter_cookies(client.make_url("/"))[CSRF_COOKIE].value
        assert (await client.post("/login", json={"token": "s3cret"})).status == 403  # no CSRF header
        cross = {"X-CSRF-Token": csrf, "Origin": "http://attacker.example"}
        assert (await client.post("/login", json={"token": "s3cret"}, headers=cross)).status == 403
        assert (await client.post("/login", json={"token": "nope"}, headers={"X-CSRF-Token": csrf})).status == 401
        assert (await client.post("/login", json={"token": "s3cret"}, headers={"X-CSRF-Token": csrf})).status == 200
        assert (await client.get("/overview")).status == 200  # the session cookie now
        assert (await client.get("/api/streams")).status == 200


@pytest.mark.integration
async def test_halt_and_resume_go_through_the_signed_durable_path(redis_url, redis, db, tmp_path: Path):
    wait = {"control_wait_s": 0.5}  # no service consumes risk:control here
    settings = Settings(redis_url=redis_url, var_dir=tmp_path, control=ControlSettings(**KEYS), dashboard=wait)
    await redis.delete(streams.HALTS)
    await db.execute("DELETE FROM halts")  # no halt another test left (Redis would rebuild the set from here)
    app = create_app(redis, db, DashboardSettings(token=SecretStr("op")), Controls(settings, db))
    async with TestClient(TestServer(app)) as client:
        await client.get("/api/state", headers={"Authorization": "Bearer op"})
        csrf = client.session.cookie_jar.filter_cookies(client.make_url("/"))[CSRF_COOKIE].value
        headers = {"Authorization": "Bearer op", "X-CSRF-Token": csrf}
        assert (await client.post("/api/halt", json={"token": "bad"}, headers=headers)).status == 401
        assert (
            await client.post("/api/halt", json={"token": "op"}, headers={"Authorization": "Bearer op"})
        ).status == 403
        halted = await client.post("/api/halt", json={"token": "op", "reason": "from the browser"}, headers=headers)
        answer = await halted.json()
        assert halted.status == 200 and [h["id"] for h in answer["halts"]] == ["human:*"]
        assert {"confirmed_by", "not_confirmed"} <= set(answer)  # who handled it within control_wait_s
        stored = await halts.load(redis)
        assert [(h.id, h.reason) for h in stored] == [("human:*", "from the browser")]
        last = (await redis.xrevrange(streams.RISK_CONTROL, count=1))[0][1][streams.FIELD.encode()]
        control = decode(last)[0]
        keys = {OPERATOR: KEYS["operator_key"].encode(), "risk": KEYS["risk_key"].encode()}
        assert control.signer == OPERATOR and check(control, keys) is None  # type: ignore[union-attr]
        resumed = await client.post("/api/resume", json={"token": "op"}, headers=headers)
        assert resumed.status == 200 and (await resumed.json())["halts"] == []
        assert len(await halts.load(redis)) == 0


@pytest.mark.integration
async def test_stream_lengths_and_consumer_lag_are_exported_for_prometheus(redis):
    await redis.xgroup_create("md:trades:lagtest", "slow", id="0", mkstream=True)
    for i in range(5):
        await redis.xadd("md:trades:lagtest", {"d": str(i)})
    metrics = ServiceMetrics("dashboard")
    exporting = asyncio.create_task(export_streams(redis, metrics, 0.1))
    labels = {"service": "dashboard", "stream": "md:trades:lagtest"}
    try:
        async with asyncio.timeout(10):
            while metrics.registry.get_sample_value("tradewind_consumer_lag", {**labels, "group": "slow"}) != 5:
                await asyncio.sleep(0.05)
    finally:
        exporting.cancel()
    assert metrics.registry.get_sample_value("tradewind_stream_length", labels) == 5


def opportunity(uid: str, decision: str, net_return: float, execution_id: str | None) -> tuple[object, ...]:
    legs = [{"symbol": "BTC/USDT", "side": "buy", "price": 100.0, "amount": 0.1}]
    return (f"x{uid}", ["USDT", "BTC", "ETH", "USDT"], json.dumps(legs), net_return + 0.003, net_return, 10.0,
            10.0 * net_return, decision, execution_id, f"arb-{uid}")  # fmt: skip


@pytest.mark.integration
async def test_the_arbitrage_page_shows_opportunities_seen_and_fired(redis, db, uid):
    rows = [opportunity(uid, "fired", 0.002, f"e-{uid}"), opportunity(uid, "stale_book", 0.004, None)]
    for i, row in enumerate(rows):
        await db.execute(
            "INSERT INTO arb_opportunities (exchange, assets, legs, gross_return, net_return, start_amount,"
            " expected_profit, decision, execution_id, strategy, book_ts, detected_at)"
            " VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10, now(), now() + make_interval(secs => $11))",
            *row,
            float(i),
        )
    async with TestClient(TestServer(create_app(redis, db, DashboardSettings()))) as client:
        data = await (await client.get("/api/page/arbitrage")).json()
        latest = [r for r in data["arb_opportunities"] if r["strategy"] == f"arb-{uid}"]
        assert [(r["decision"], r["net_return"], r["execution_id"]) for r in latest] == [
            ("stale_book", 0.004, None),
            ("fired", 0.002, f"e-{uid}"),
        ]  # latest first
        assert latest[0]["expected_profit"] == pytest.approx(0.04) and latest[0]["assets"] == rows[0][1]
        decisions = {r["decision"]: r for r in data["arb_decisions"] if r["strategy"] == f"arb-{uid}"}
        assert decisions["fired"]["seen"] == 1 and decisions["stale_book"]["avg_net_return"] == 0.004
        assert "arb_executions" in data
        same = await (await client.get("/api/arb_opportunities")).json()  # the table alone, for scripts
        assert [r["decision"] for r in same if r["strategy"] == f"arb-{uid}"] == ["stale_book", "fired"]


def test_a_rounds_report_carries_a_small_held_out_equity_curve():
    market = compute_features(load_bars(DATA / "btc-perp-20211231_1m_head3000.csv.gz"))
    report = walk_forward(BASELINES["momentum"], market, EnvConfig(), start=1000, windows=2)
    stored = round_report(report)
    curve, full = stored["equity"], report["_curves"]["momentum"]
    assert len(full) == len(market) - 1000 and len(curve) == 200  # downsampled, first and last bars kept
    assert curve[0] == [market.ts[1000] / 1e9, 1.0] and curve[-1][0] == report["to_ts"] / 1e9
    assert curve[-1][1] == pytest.approx(1 + report["total_return"], abs=1e-6)  # after costs, as reported
    assert all(a[0] < b[0] for a, b in itertools.pairwise(curve)) and len(json.dumps(curve)) < 8_000
    assert "_ts" not in stored and "_curves" not in stored


@pytest.mark.integration
async def test_the_policies_page_gives_a_policys_held_out_equity_curve(redis, db, uid):
    market = compute_features(load_bars(DATA / "btc-perp-20211231_1m_head3000.csv.gz"))
    registry = PolicyRegistry(db)
    ids = []
    for name in ("momentum", "buy_and_hold"):  # what an online round records for each trial
        report = round_report(walk_forward(BASELINES[name], market, EnvConfig(), start=2000, windows=2))
        metrics = trial_metrics(report, None, None, [])
        ids.append(await registry.record_trial(f"t{uid}", "file:///x", metrics, {}, 1, 2, "binance", "BTC/USDT"))
    expected = trial_metrics(
        round_report(walk_forward(BASELINES["momentum"], market, EnvConfig(), start=2000)), None, None, []
    )
    async with TestClient(TestServer(create_app(redis, db, DashboardSettings()))) as client:
        board = await (await client.get("/api/page/policies", params={"policy": ids[0]})).json()
        assert board["equity"]["policy"] == ids[0] and {*ids} <= set(board["with_curves"])
        assert [list(p) for p in zip(board["equity"]["t"], board["equity"]["equity"], strict=True)] == expected[
            "equity"
        ]
        listed = {r["id"]: r for r in board["policies"]}
        assert "equity" not in listed[ids[0]]["metrics"] and listed[ids[0]]["metrics"]["sharpe"] == expected["sharpe"]
        latest = await (await client.get("/api/page/policies")).json()  # none asked: the latest with a curve
        assert latest["equity"]["policy"] == ids[1] and latest["equity"]["equity"][0] == 1.0
        unknown = await (await client.get("/api/page/policies", params={"policy": "nope"})).json()
        assert unknown["equity"]["policy"] == ids[1]


def test_a_portfolio_rounds_trial_carries_its_held_out_equity_curve(tmp_path: Path) -> None:
    markets = _portfolio_markets("eq")
    bars = lead_lag(1_000, seed=5, markets=markets).bars
    cfg = _portfolio_settings(tmp_path, markets).trainer
    trials, _ = train_and_evaluate_portfolio(cfg, markets, bars, None, 1, train_fn=constant_portfolio_policy)
    report = trials[0].report
    curve = report["equity"]
    assert 2 < len(curve) <= 200 and curve[0][1] == 1.0 and curve[-1][0] == report["to_ts"] / 1e9
    assert curve[-1][1] == pytest.approx(1 + report["total_return"], abs=1e-6)
    assert json.loads(json.dumps(report))["equity"] == curve  # plain JSON, as the registry stores it
