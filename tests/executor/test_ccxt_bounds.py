"""The live gateway's memory of fill totals is bounded: open orders are kept, finished ones in an LRU."""

from __future__ import annotations

from typing import Any

from services.executor.ccxt_gateway import CcxtGateway
from shared.sections.executor import CcxtVenue


def order(oid: str, filled: float, status: str) -> dict[str, Any]:
    return {"id": oid, "status": status, "amount": 1.0, "filled": filled, "average": 100.0, "cost": 100.0 * filled}


def gateway(done_kept: int) -> CcxtGateway:
    return CcxtGateway({"binance": CcxtVenue(api_key="k", secret="s")}, lambda v: object(), done_kept=done_kept)


def fills_of(gw: CcxtGateway, cid: str) -> list[float]:
    return [f.amount for e in gw._events if e.client_order_id == cid for f in e.fills]


def test_a_duplicated_final_report_adds_no_fill_and_finished_orders_are_forgotten_past_the_bound():
    gw = gateway(done_kept=2)
    gw._record("a", "binance", "BTC/USDT", "buy", order("1", 0.4, "open"), None)
    gw._record("a", "binance", "BTC/USDT", "buy", order("1", 1.0, "closed"), None)
    gw._record("a", "binance", "BTC/USDT", "buy", order("1", 1.0, "closed"), None)  # the websocket says it again
    gw._record("a", "binance", "BTC/USDT", "buy", order("1", 0.4, "open"), None)  # and a stale one, late
    assert fills_of(gw, "a") == [0.4, 0.6]
    assert "a" not in gw._seen_filled  # finished: only open orders are kept without bound
    for cid in ("b", "c", "d"):
        gw._record(cid, "binance", "BTC/USDT", "buy", order(cid, 1.0, "closed"), None)
    assert list(gw._done_filled) == ["c", "d"]
    assert gw._done_filled.evicted == 2


def test_an_open_order_is_never_forgotten_however_many_finish_after_it():
    gw = gateway(done_kept=2)
    gw._record("open", "binance", "BTC/USDT", "buy", order("0", 0.5, "open"), None)
    for i in range(10):
        gw._record(f"c{i}", "binance", "BTC/USDT", "buy", order(str(i + 1), 1.0, "closed"), None)
    gw._record("open", "binance", "BTC/USDT", "buy", order("0", 1.0, "closed"), None)
    assert fills_of(gw, "open") == [0.5, 0.5]
    assert len(gw._seen_filled) == 0 and len(gw._done_filled) == 2
