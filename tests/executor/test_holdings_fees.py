"""A fee taken in the base asset is not held: a spot policy never sells more than its wallet got."""

from __future__ import annotations

import time

import pytest

from services.executor.store import ExecutorStore
from services.executor.strategies.holdings import Holdings
from shared.schemas import Fill, OrderEvent, OrderIntent

SPOT = ("binance", "BTC/USDT")
PERP = ("binance_futures", "BTC/USDT:USDT")


def intent(cid: str, market: tuple[str, str], side: str = "buy", amount: float = 1.0) -> OrderIntent:
    return OrderIntent(cid, *market, side, "market", amount, time.time_ns(), strategy="rl")  # type: ignore[arg-type]


def report(cid: str, market: tuple[str, str], filled: float, fills: list[Fill], status: str = "filled") -> OrderEvent:
    return OrderEvent(cid, *market, "buy", status, time.time_ns(), filled=filled, fills=fills)  # type: ignore[arg-type]


def test_a_base_asset_fee_comes_off_once_per_fill_and_a_quote_fee_never():
    h = Holdings()
    h.sent(intent("a", SPOT))
    first = Fill("f1", 60_000.0, 0.4, 0.0004, "BTC", 1)
    h.on_event(report("a", SPOT, 0.4, [first], "partially_filled"))
    assert h.held[SPOT] == pytest.approx(0.3996)
    second = Fill("f2", 60_000.0, 0.6, 0.0006, "BTC", 2)
    h.on_event(report("a", SPOT, 1.0, [first, second]))  # a report repeating the first fill takes it off once
    assert h.held[SPOT] == pytest.approx(0.999)
    assert h.position(SPOT) == pytest.approx(0.999)  # nothing in flight once final
    h.sent(intent("b", PERP))
    h.on_event(report("b", PERP, 1.0, [Fill("f3", 60_000.0, 1.0, 24.0, "USDT", 3)]))
    assert h.held[PERP] == 1.0


@pytest.mark.integration
async def test_after_a_restart_the_stored_holdings_are_net_of_base_fees(db, uid):
    store = ExecutorStore(db)  # type: ignore[arg-type]
    done, open_ = f"fee-done-{uid}", f"fee-open-{uid}"
    market = ("binance", f"F{uid.upper()}/USDT")
    await store.save_orders([intent(done, market), intent(open_, market)])
    fill_done = Fill(f"d-{uid}", 100.0, 1.0, 0.001, f"F{uid.upper()}", 1)
    fill_open = Fill(f"o-{uid}", 100.0, 0.5, 0.0005, f"F{uid.upper()}", 2)
    await store.record(
        [(report(done, market, 1.0, [fill_done]), 0), (report(open_, market, 0.5, [fill_open], "partially_filled"), 0)],
        [], [], [],
    )  # fmt: skip
    held = await store.held_by_strategy("rl")
    assert held[market] == pytest.approx(1.5 - 0.0015)
    taken = await store.base_fee_fills([open_])
    assert taken == {open_: {f"o-{uid}"}}

    h = Holdings()
    pending = [o for o in await store.orders_in(("partially_filled",)) if o.intent.client_order_id == open_]
    assert len(pending) == 1
    h.restore(held, pending, taken)
    # the open order's next report repeats its stored fill and adds one: only the new fee comes off
    h.on_event(report(open_, market, 1.0, [fill_open, Fill(f"o2-{uid}", 100.0, 0.5, 0.0005, f"F{uid.upper()}", 3)]))
    assert h.held[market] == pytest.approx(2.0 - 0.002)
