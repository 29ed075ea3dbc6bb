"""CcxtGateway end to end: real ccxt `binance` class, its URLs pointed at a local fake venue."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from services.executor.ccxt_gateway import CcxtGateway
from shared.schemas import OrderEvent, OrderIntent
from shared.sections.executor import CcxtVenue
from tests.executor.fake_binance import FakeBinance
from tests.executor.fake_venue.harness import venue_urls

DATA = Path(__file__).parent.parent / "data" / "executor"
KEY, SECRET = "test-key", "test-secret"


def recorded_book(levels: int = 20) -> dict[str, list[tuple[str, str]]]:
    with gzip.open(DATA / "binance_btcusdt_20240809_20s.gz", "rt") as f:
        for line in f:
            body = line.split(" ", 1)[1]
            if body.startswith('{"lastUpdateId"'):
                snap = json.loads(body)
                return {"bids": snap["bids"][:levels], "asks": snap["asks"][:levels]}
    raise AssertionError("no snapshot in the capture")


@pytest.fixture
async def venue():
    book = recorded_book()
    info = (DATA / "binance_exchangeInfo_BTCUSDT_ETHUSDT_NKNUSDT_2021-10-12.json").read_text()
    fake = FakeBinance(info, {"BTCUSDT": book}, KEY, SECRET)
    fake.balances["spot"] = {"USDT": Decimal(100_000), "BTC": Decimal(1)}
    fake.balances["cross"] = {"USDT": Decimal(5_000)}
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    config = CcxtVenue(
        ccxt_id="binance",
        api_key=KEY,
        secret=SECRET,  # type: ignore[arg-type]
        urls=venue_urls(base),
        withdraw_allowlist={"USDT": ["TAllowedAddress000000000000000000"]},
    )
    gateway = CcxtGateway({"binance": config})
    yield fake, gateway, book
    await gateway.close()
    await fake.close()
    await server.close()


async def events_of(gateway: CcxtGateway) -> list[OrderEvent]:
    return [event for event, _ in await gateway.poll()]


def intent(cid: str, side: str, kind: str, amount: float, price: float | None = None, **kw: object) -> OrderIntent:
    return OrderIntent(cid, "binance", "BTC/USDT", side, kind, amount, 0, price=price, **kw)  # type: ignore[arg-type]


async def test_market_order_fills_through_ccxt(venue) -> None:
    fake, gateway, book = venue
    await gateway.submit(intent("c1", "buy", "market", 0.5))
    events = await events_of(gateway)
    assert [e.status for e in events] == ["filled"]
    # the fake walked the recorded asks; the event's fills are exactly those levels
    expected, left = [], Decimal("0.5")
    for p, q in book["asks"]:
        take = min(left, Decimal(q))
        if take > 0:
            expected.append((Decimal(p), take))
        left -= take
    assert [(Decimal(repr(f.price)), Decimal(repr(f.amount))) for f in events[0].fills] == expected
    assert fake.balances["spot"]["BTC"] == Decimal("1.5")
    assert any(e.kind == "fill" and e.asset == "BTC" and e.delta > 0 for e in gateway.drain_ledger())
    balances = {b.asset: b.free for b in await gateway.balances()}
    assert balances["BTC"] == Decimal("1.5")
    assert "POST /api/v3/order" in fake.requests


async def test_limit_order_rests_then_cancels(venue) -> None:
    _, gateway, book = venue
    price = float(book["bids"][5][0])
    await gateway.submit(intent("c2", "buy", "limit", 0.01, price))
    assert [e.status for e in await events_of(gateway)] == ["accepted"]
    assert [o.client_order_id for o in await gateway.open_orders()] == ["c2"]
    assert await gateway.knows("c2", "binance", "BTC/USDT")
    assert not await gateway.knows("never-sent", "binance", "BTC/USDT")
    await gateway.submit(OrderIntent("c2", "binance", "BTC/USDT", "buy", "limit", 0.01, 0, cancel=True))
    assert [e.status for e in await events_of(gateway)][-1] == "cancelled"
    assert await gateway.open_orders() == []


async def test_post_only_crossing_is_rejected_by_the_venue(venue) -> None:
    _, gateway, book = venue
    await gateway.submit(intent("c3", "buy", "post_only", 0.01, float(book["asks"][0][0])))
    events = await events_of(gateway)
    assert [e.status for e in events] == ["rejected"] and events[0].reason.startswith("venue.")


async def test_margin_borrow_and_isolated_order(venue) -> None:
    fake, gateway, _ = venue
    await gateway.borrow("binance", "BTC", Decimal("0.02"), "cross")
    assert fake.borrowed[("cross", "BTC")] == Decimal("0.02")
    await gateway.submit(intent("c4", "sell", "market", 0.02, margin_mode="cross"))
    events = await events_of(gateway)
    assert events[-1].status == "filled"
    assert "POST /sapi/v1/margin/order" in fake.requests
    await gateway.repay("binance", "BTC", Decimal("0.01"), "cross")
    assert fake.borrowed[("cross", "BTC")] == Decimal("0.01")


async def test_withdrawals_only_to_allow_listed_addresses(venue) -> None:
    fake, gateway, _ = venue
    with pytest.raises(PermissionError, match="withdraw_allowlist"):
        await gateway.withdraw("binance", "USDT", Decimal(10), "TAttackerAddress")
    assert fake.withdrawals == []
    wid = await gateway.withdraw("binance", "USDT", Decimal(10), "TAllowedAddress000000000000000000")
    assert wid.startswith("w") and fake.withdrawals[0]["address"] == "TAllowedAddress000000000000000000"


async def test_wrong_secret_is_refused_by_the_venues_signature_check(venue) -> None:
    fake, gateway, _ = venue
    urls = gateway.venues["binance"].urls
    wrong = CcxtGateway({"binance": CcxtVenue(api_key=KEY, secret="not-the-secret", urls=urls)})  # type: ignore[arg-type]
    try:
        await wrong.submit(intent("c5", "buy", "market", 0.01))
        events = await events_of(wrong)
    finally:
        await wrong.close()
    assert [(e.status, e.reason) for e in events] == [("rejected", "venue.AuthenticationError")]
    assert fake.orders == {}
