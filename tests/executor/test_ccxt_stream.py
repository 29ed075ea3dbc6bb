"""Order updates from the venue's private websocket (ccxt pro ``watch_orders``); REST every
``rest_poll_s`` while it is down, and every ``rest_check_s`` while it is up.

Real ccxt against the fake venue's user-data stream: a resting order filled by someone else is seen
through the pushed executionReport with no REST order lookup (and wakes the host at once); with the
stream down, REST polling takes over and still reports the fill; a report the stream never sent is
found by the slower check, or at once by a cancel the venue answers "unknown order".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from services.executor.ccxt_gateway import CcxtGateway
from shared.schemas import OrderEvent, OrderIntent
from tests.executor.fake_venue import Fault
from tests.executor.fake_venue.harness import fake_venue

LOOKUP = "GET /api/v3/order"  # a REST order-status request at the fake
FAST = {"receive_window_ms": 400, "clock_skew_ms": 0, "lookup_backoff_s": 0.02, "timeout_ms": 1500}


def resting_buy(cid: str, price: float) -> OrderIntent:
    return OrderIntent(cid, "binance", "BTC/USDT", "buy", "limit", 0.01, 0, price=price)


async def poll_until(gateway: CcxtGateway, done: Callable[[list[OrderEvent]], bool], what: str) -> list[OrderEvent]:
    """Poll the gateway until ``done(events so far)``; fail after 10 s naming ``what``."""
    seen: list[OrderEvent] = []
    deadline = time.monotonic() + 10
    while not done(seen):
        assert time.monotonic() < deadline, f"{what}: {[(e.client_order_id, e.status) for e in seen]}"
        seen += [e for e, _ in await gateway.poll()]
        await asyncio.sleep(0.005)  # poll() need not suspend: let the stream's task run
    return seen


def filled(cid: str) -> Callable[[list[OrderEvent]], bool]:
    return lambda events: any(e.client_order_id == cid and e.status == "filled" for e in events)


async def test_fills_arrive_on_the_private_websocket_and_over_rest_while_it_is_down() -> None:
    async with fake_venue(rest_poll_s=0.05, rest_check_s=600.0, **FAST) as (fake, cfg):
        price = float(fake.book["BTCUSDT"]["bids"][5][0])  # below the touch: it rests
        gateway = CcxtGateway({"binance": cfg})
        try:
            await gateway.submit(resting_buy("w1", price))
            await poll_until(
                gateway,
                lambda _: gateway.stream_up.get("binance", False) and fake.ws.subscribed >= 1,
                "the private websocket never came up",
            )
            lookups, pushed = fake.requests.count(LOOKUP), fake.ws.pushed
            woken = asyncio.Event()
            gateway.on_report(woken.set)
            await fake.fill_resting("w1")
            await asyncio.wait_for(woken.wait(), 10)  # the push alone reached us: no poll in between
            events = await poll_until(gateway, filled("w1"), "the pushed fill of w1 was not reported")
            assert fake.ws.pushed == pushed + 1
            assert fake.requests.count(LOOKUP) == lookups  # no REST polling while the stream is up
            fill = next(e for e in events if e.status == "filled").fills
            assert [(f.price, f.amount) for f in fill] == [(price, 0.01)]

            await gateway.submit(resting_buy("w2", price))
            await fake.ws.go_down()
            await poll_until(gateway, lambda _: not gateway.stream_up["binance"], "the dead stream went unnoticed")
            lookups, pushed = fake.requests.count(LOOKUP), fake.ws.pushed
            await fake.fill_resting("w2")
            events = await poll_until(gateway, filled("w2"), "REST polling did not report the fill of w2")
            assert fake.ws.pushed == pushed  # nothing went out on the stream: REST found it
            assert fake.requests.count(LOOKUP) > lookups
            assert [(f.price, f.amount) for e in events if e.status == "filled" for f in e.fills] == [(price, 0.01)]
        finally:
            await gateway.close()


async def stream_up(gateway: CcxtGateway, fake: object) -> None:
    await poll_until(
        gateway,
        lambda _: gateway.stream_up.get("binance", False) and fake.ws.subscribed >= 1,  # type: ignore[attr-defined]
        "the private websocket never came up",
    )


async def filled_unreported(gateway: CcxtGateway, fake: Any, order: OrderIntent) -> int:
    """Place ``order`` (resting), then someone fills it while the socket drops its report; return how many
    reports the socket had pushed before."""
    await gateway.submit(order)
    await stream_up(gateway, fake)
    pushed: int = fake.ws.pushed
    fake.ws.drop = 1
    await fake.fill_resting(order.client_order_id)
    return pushed


async def test_a_fill_the_websocket_never_reported_is_found_by_the_rest_check() -> None:
    """The stream is up, but the fill's report never came (a fill while the subscription was being made:
    the venue replays nothing). Before, nothing read that order again: it stayed open here for good."""
    async with fake_venue(rest_poll_s=0.05, rest_check_s=0.2, **FAST) as (fake, cfg):
        price = float(fake.book["BTCUSDT"]["bids"][5][0])
        gateway = CcxtGateway({"binance": cfg})
        try:
            pushed = await filled_unreported(gateway, fake, resting_buy("lost", price))
            events = await poll_until(gateway, filled("lost"), "the unreported fill was never found")
            assert fake.ws.pushed == pushed  # it was not pushed: REST found it
            assert [(f.price, f.amount) for e in events if e.status == "filled" for f in e.fills] == [(price, 0.01)]
        finally:
            await gateway.close()


async def test_a_cancel_answered_unknown_order_reads_what_became_of_it() -> None:
    """Cancelling an order that filled unreported (Binance -2011 "Unknown order sent."): the order is read
    at once and its fill recorded; the slow check is far off here."""
    async with fake_venue(rest_poll_s=0.05, rest_check_s=600.0, **FAST) as (fake, cfg):
        price = float(fake.book["BTCUSDT"]["bids"][5][0])
        gateway = CcxtGateway({"binance": cfg})
        try:
            await filled_unreported(gateway, fake, resting_buy("gone", price))
            cancel = OrderIntent("gone", "binance", "BTC/USDT", "buy", "limit", 0.01, 0, price=price, cancel=True)
            await gateway.submit(cancel)
            events = [e for e, _ in await gateway.poll()]
            assert [(e.client_order_id, e.status) for e in events] == [("gone", "filled")]
        finally:
            await gateway.close()


async def test_a_fill_reported_on_the_websocket_before_the_orders_answer_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A resting order filled at once: the socket's FILLED report arrives before the answer to our request
    (which says NEW). The report used to be dropped (an order this run did not follow yet) and the order
    then stayed open here; now it is applied after the answer. The venue holds its answer until the
    gateway has had the report."""
    caplog.set_level(logging.DEBUG, logger="services.executor.ccxt_venue")
    async with fake_venue(rest_poll_s=0.05, rest_check_s=600.0, **{**FAST, "timeout_ms": 30_000}) as (fake, cfg):
        price = float(fake.book["BTCUSDT"]["bids"][5][0])
        gateway = CcxtGateway({"binance": cfg})
        try:
            await gateway.submit(resting_buy("warmup", price))  # the socket comes up on the first poll
            await stream_up(gateway, fake)
            lookups = fake.requests.count(LOOKUP)
            fake.faults.append(Fault(fill_before_answer=True, hang=True))  # the answer waits for `released`
            placing = asyncio.create_task(gateway.submit(resting_buy("quick", price)))
            deadline = time.monotonic() + 10
            while not any("quick" in r.getMessage() for r in caplog.records):  # the report reached the gateway
                assert time.monotonic() < deadline and not placing.done(), "the fill's report never came"
                await gateway.poll()
                await asyncio.sleep(0.005)
            fake.released.set()
            await placing
            events = await poll_until(gateway, filled("quick"), "the fill that beat the answer was lost")
            assert fake.requests.count(LOOKUP) == lookups  # the pushed report did it, not a REST read
            assert [(f.price, f.amount) for e in events if e.status == "filled" for f in e.fills] == [(price, 0.01)]
        finally:
            fake.released.set()
            await gateway.close()
