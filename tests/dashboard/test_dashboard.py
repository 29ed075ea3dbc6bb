"""The dashboard: JSON views over real Redis and PostgreSQL, and its exposure rules."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from services.dashboard.service import DashboardRefused, check_exposure, create_app
from shared.bus import RedisBus
from shared.config import BusSettings, DashboardSettings
from shared.schemas import Trade


def test_off_loopback_without_a_token_is_refused():
    with pytest.raises(DashboardRefused, match="TRADEWIND_DASHBOARD__TOKEN"):
        check_exposure(DashboardSettings(host="0.0.0.0"))
    check_exposure(DashboardSettings(host="0.0.0.0", token=SecretStr("t")))
    check_exposure(DashboardSettings(host="127.0.0.1"))
    check_exposure(DashboardSettings(host="::1"))


@pytest.mark.integration
async def test_views_show_streams_and_records(redis, db, uid):
    stream = f"dash:{uid}"
    await RedisBus(redis, BusSettings()).publish(stream, Trade("x", "A/B", "1", 1.0, 1.0, "buy", 1, 1))
    await db.execute(
        "INSERT INTO orders (client_order_id, exchange, symbol, side, order_type, amount, status)"
        " VALUES ($1, 'binance', 'BTC/USDT', 'buy', 'market', 0.5, 'filled')",
        f"cid-{uid}",
    )
    async with TestClient(TestServer(create_app(redis, db, DashboardSettings()))) as client:
        page = await client.get("/")
        assert page.status == 200 and "Tradewind" in await page.text()
        streams = await (await client.get("/api/streams")).json()
        assert any(s["name"] == stream and s["length"] == 1 for s in streams)
        orders = await (await client.get("/api/orders")).json()
        assert any(o["client_order_id"] == f"cid-{uid}" and o["amount"] == 0.5 for o in orders)
        assert (await client.get("/api/nonsense")).status == 404
        assert (await client.get("/healthz")).status == 200


@pytest.mark.integration
async def test_a_configured_token_is_required(redis):
    app = create_app(redis, None, DashboardSettings(token=SecretStr("s3cret")))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/api/streams")).status == 401
        assert (await client.get("/api/streams", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await client.get("/api/streams", headers={"Authorization": "Bearer s3cret"})).status == 200
        assert (await client.get("/api/balances?token=s3cret")).status == 200
