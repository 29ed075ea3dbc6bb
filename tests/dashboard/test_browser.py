"""The dashboard in headless Chromium: log in, every page renders its data live (no console error),
the equity chart's last point is /api/equity's, orders show their sides, arbitrage opportunities with
their decisions, a policy's held-out equity chart, a hostile value from the database stays text, and
the halt / resume buttons change the durable halt set. A screenshot of each
page is kept under the pytest temp dir (overview.png is the one in docs/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from services.dashboard.control import Controls
from services.dashboard.service import PAGES, create_app
from shared import halts
from shared.config import DashboardSettings, Settings
from shared.schemas import streams
from shared.sections.control import ControlSettings
from shared.storage.policies import PolicyRegistry
from tests.dashboard.browser import NO_BROWSER, Browser, browser_path

pytestmark = pytest.mark.integration
HOSTILE = "<img src=x onerror=window.pwned=1>"


@pytest.fixture
def chromium() -> str:
    path = browser_path()
    if path is None:
        pytest.skip(NO_BROWSER)
    return path


async def test_every_page_in_a_browser(chromium, redis_url, redis, db, uid, tmp_path: Path):
    keys = ControlSettings(risk_key=SecretStr("r" * 64), operator_key=SecretStr("o" * 64))
    # no service consumes risk:control here: a halt is confirmed by none of the groups other tests left
    settings = Settings(redis_url=redis_url, var_dir=tmp_path / "var", control=keys, dashboard={"control_wait_s": 0.5})
    await redis.delete(streams.HALTS)
    await db.execute("DELETE FROM halts")  # no halt another test left (Redis would rebuild the set from here)
    state = {
        "ts": 1,
        "halted": "",
        "halts": [],
        "equity": 1000.0,
        "venues": {"binance": {"equity": 1000.0}},
        "crashes": {"binance:BTC/USDT": "crash"},
        "hedges": {"binance:BTC/USDT": {"venue": "okx", "target": -0.25}},
    }
    await redis.set(streams.RISK_STATE, json.dumps(state))
    for i, side in enumerate(("buy", "sell")):
        await db.execute(
            "INSERT INTO orders (client_order_id, exchange, symbol, side, order_type, amount, status, strategy)"
            " VALUES ($1, 'binance', 'BTC/USDT', $2, 'limit', 0.5, 'accepted', 'ppo')",
            f"b{i}-{uid}",
            side,
        )
    await db.execute(
        "INSERT INTO risk_events (ts, kind, severity, detail) VALUES (now(), 'halt', 'critical', $1::jsonb)",
        json.dumps({"reason": HOSTILE}),
    )
    for k, value in enumerate((990.0, 1005.5)):
        await db.execute(
            "INSERT INTO equity_snapshots (ts, venue, equity) VALUES (now() + make_interval(secs => $1), '*', $2)",
            float(k),
            value,
        )
    await db.execute(
        "INSERT INTO arb_opportunities (exchange, assets, legs, gross_return, net_return, start_amount,"
        " expected_profit, decision, strategy, book_ts, detected_at)"
        " VALUES ('binance', $1, '[]'::jsonb, 0.004, 0.0015, 10.0, 0.015, $2, $3, now(), now() + interval '1 hour')",
        ["USDT", "BTC", "ETH", "USDT"],
        HOSTILE,
        f"arb-{uid}",
    )
    curve = [[1.7e9, 1.0], [1.7e9 + 60, 1.012], [1.7e9 + 120, 0.997]]
    policy_id = await PolicyRegistry(db).record_trial(
        f"b{uid}", "file:///x", {"sharpe": 0.5, "equity": curve}, {}, 1, 2, "binance", "BTC/USDT"
    )
    app = create_app(redis, db, DashboardSettings(token=SecretStr("op")), Controls(settings, db))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        async with Browser(chromium, tmp_path / "profile") as page:
            await page.goto(base + "/overview")  # redirected to the login form
            await page.until("!!document.getElementById('token')", 10, "the login form")
            await page.eval("document.getElementById('token').value = 'op'")
            await page.eval("document.querySelector('#login button').click()")
            await page.until(
                "document.body.dataset.page === 'overview' && document.body.dataset.rendered", 20, "overview"
            )
            await page.until("!!(window.tw.charts.equity)", 10, "the equity chart")
            last_drawn = await page.eval(
                "(() => { const d = tw.charts.equity.plot.data; return d[1][d[1].length - 1]; })()"
            )
            api = await page.eval("fetch('/api/equity').then(r => r.json())")
            assert last_drawn == api["series"]["*"][-1]
            sides = await page.eval(
                "[...document.querySelectorAll('#open_orders td.buy, #open_orders td.sell')].map(td => td.textContent)"
            )
            assert {"buy", "sell"} <= set(sides)
            await page.screenshot(shots / "overview.png")
            for name in PAGES:
                if name == "overview":
                    continue
                await page.goto(f"{base}/{name}")
                await page.until("document.body.dataset.rendered === '1'", 20, f"the {name} page's data")
                await page.screenshot(shots / f"{name}.png")
                if name == "bus":
                    await page.until("document.querySelectorAll('#streams tr').length > 1", 10, "the stream table")
                if name == "arbitrage":  # the latest opportunity, its decision shown as text
                    cells = await page.eval(
                        "[...document.querySelectorAll('#arb_opportunities tr:nth-child(2) td')]"
                        ".map(td => td.textContent)"
                    )
                    assert f"arb-{uid}" in cells and HOSTILE in cells and "0.001500" in cells
                    assert not await page.eval("!!window.pwned")
                if name == "policies":  # the latest policy with a curve is drawn: its held-out equity
                    await page.until("!!(window.tw.charts.policy_equity)", 10, "the policy equity chart")
                    drawn = await page.eval("tw.charts.policy_equity.plot.data")
                    assert drawn == [[p[0] for p in curve], [p[1] for p in curve]]
                    assert await page.eval("document.getElementById('policy-pick').value") == policy_id
                if name == "risk":
                    text = await page.eval("document.getElementById('risk_events').textContent")
                    assert HOSTILE in text and not await page.eval("!!window.pwned")  # shown as text, never run
                    crashes = await page.eval("[...document.querySelectorAll('#crashes td')].map(td => td.textContent)")
                    assert crashes == ["binance:BTC/USDT", "crash"]
                    hedges = await page.eval("[...document.querySelectorAll('#hedges td')].map(td => td.textContent)")
                    assert hedges == ["binance:BTC/USDT", "okx", "-0.250000"]
                    await page.eval("document.getElementById('op-token').value = 'op'")
                    await page.eval("document.getElementById('op-reason').value = 'browser drill'")
                    await page.eval("document.getElementById('halt').click()")
                    await page.until("document.getElementById('op-result').dataset.status === '200'", 10, "the halt")
                    assert [h.id for h in await halts.load(redis)] == ["human:*"]
                    await page.eval("document.getElementById('resume').click()")
                    await page.until(
                        "/halts now: none/.test(document.getElementById('op-result').textContent)", 10, "resume"
                    )
                    assert len(await halts.load(redis)) == 0
            assert page.errors == [], page.errors
    finally:
        await server.close()
