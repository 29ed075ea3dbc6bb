"""Start the fake venue on a real local port and build the CcxtVenue settings that point ccxt at it."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from shared.sections.executor import CcxtVenue
from tests.executor.fake_venue.core import FakeBinance

DATA = Path(__file__).parent.parent.parent / "data" / "executor"
KEY, SECRET = "test-key", "test-secret"


def recorded_book(levels: int = 20) -> dict[str, list[tuple[str, str]]]:
    with gzip.open(DATA / "binance_btcusdt_20240809_20s.gz", "rt") as f:
        for line in f:
            body = line.split(" ", 1)[1]
            if body.startswith('{"lastUpdateId"'):
                snap = json.loads(body)
                return {"bids": snap["bids"][:levels], "asks": snap["asks"][:levels]}
    raise AssertionError("no snapshot in the capture")


def venue_urls(base: str) -> dict[str, str]:
    ws = base.replace("http://", "ws://")
    return {
        "public": f"{base}/api/v3",
        "private": f"{base}/api/v3",
        "sapi": f"{base}/sapi/v1",
        "fapiPublic": f"{base}/fapi/v1",
        "fapiPrivate": f"{base}/fapi/v1",
        "fapiPrivateV2": f"{base}/fapi/v2",
        "fapiPrivateV3": f"{base}/fapi/v3",
        "ws.ws-api.spot": f"{ws}/ws-api/v3",
    }


@asynccontextmanager
async def fake_venue(**settings: Any) -> AsyncIterator[tuple[FakeBinance, CcxtVenue]]:
    """A running fake venue funded with spot USDT/BTC and cross-margin USDT, and the settings to reach it."""
    info = (DATA / "binance_exchangeInfo_BTCUSDT_ETHUSDT_NKNUSDT_2021-10-12.json").read_text()
    fake = FakeBinance(info, {"BTCUSDT": recorded_book()}, KEY, SECRET)
    fake.balances["spot"] = {"USDT": Decimal(100_000), "BTC": Decimal(1)}
    fake.balances["cross"] = {"USDT": Decimal(5_000)}
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    config = CcxtVenue(
        ccxt_id="binance",
        api_key=KEY,  # type: ignore[arg-type]
        secret=SECRET,  # type: ignore[arg-type]
        urls=venue_urls(f"http://127.0.0.1:{server.port}"),
        withdraw_allowlist={"USDT": ["TAllowedAddress000000000000000000"]},
        **settings,
    )
    try:
        yield fake, config
    finally:
        await fake.close()
        await server.close()
