"""Cross-venue arbitrage on the paper exchange: XNO carried in a second, BTC only with inventory."""

from __future__ import annotations

import json

import pytest

from services.executor.arbitrage.cross import CrossVenueArbitrage, Top
from shared.paper import PaperExchange
from shared.schemas import BookUpdate, OrderIntent
from shared.sections.executor import VenueSim, default_transfers

from .snapshots import DATA

FEE = 0.001
S = 1_000_000_000
# Gate.io NANO_USDT ticker, 2021-04-22T12:12:41Z (shared/data ws/gateio capture): ask 8.9167, bid 8.8685
XNO_ASK = 8.9167
BTC_ASK = float(json.loads((DATA / "poloniex_returnTicker_2021-05-02.json").read_text())["USDT_BTC"]["lowestAsk"])
GAP = 1.01  # the dear venue's bid, over the cheap venue's ask


def exchange() -> PaperExchange:
    sim = VenueSim(taker_fee=FEE, maker_fee=FEE, fee_in="quote", order_latency_ms=1, report_latency_ms=1,
                   latency_jitter_ms=0)  # fmt: skip
    return PaperExchange({"cheap": sim, "dear": sim}, transfers=default_transfers(), seed=1)


def books(ex: PaperExchange, symbol: str, ask: float, size: float, now: int) -> CrossVenueArbitrage:
    """Realistic books around a real ticker: the cheap venue's spread as recorded, the dear one 1% up."""
    scanner = CrossVenueArbitrage({"cheap": FEE, "dear": FEE}, default_transfers(), max_amount=size / 2)
    for venue, (bid, ask_) in {"cheap": (ask * 0.999, ask), "dear": (ask * GAP, ask * GAP * 1.001)}.items():
        ex.on_book(BookUpdate(venue, symbol, 1, now, now, [(bid, size)], [(ask_, size)], snapshot=True))
        scanner.on_top(venue, symbol, Top(bid, size, ask_, size))
    return scanner


def free(ex: PaperExchange) -> object:
    return lambda venue, asset: float(ex.accounts.wallet(venue).get(asset).free)


def fill(ex: PaperExchange, intents: list[OrderIntent], now: int) -> int:
    for intent in intents:
        ex.submit(intent, now)
    now += 10_000_000
    events = ex.poll(now)
    assert {e.client_order_id for e in events if e.status == "filled"} == {i.client_order_id for i in intents}
    return now


def usdt(ex: PaperExchange) -> float:
    return sum(float(ex.accounts.ledger_sum(v, "spot", "USDT")) for v in ("cheap", "dear"))


def test_xno_is_bought_carried_in_a_second_and_sold_for_the_gap() -> None:
    ex, now = exchange(), 1_700_000_000 * S
    ex.deposit("cheap", "USDT", 10_000.0, now)
    scanner = books(ex, "XNO/USDT", XNO_ASK, 400.0, now)
    opp = scanner.best("XNO/USDT", free(ex))  # type: ignore[arg-type]
    assert opp is not None and opp.mode == "transfer" and (opp.buy_venue, opp.sell_venue) == ("cheap", "dear")
    assert opp.transit_s == 1.0 and opp.transfer_cost == 0.0 and opp.time_risk > 0
    now = fill(ex, opp.intents("x1", now), now)
    carried = ex.accounts.wallet("cheap").get("XNO").free
    transfer = ex.transfer("cheap", "dear", "XNO", carried, now)
    assert transfer.settles_ns - transfer.sent_ns == 1 * S and transfer.fee == 0
    ex.advance(now + S - 1)
    assert ex.accounts.wallet("dear").get("XNO").free == 0  # still in transit
    now += S
    ex.advance(now)
    assert ex.accounts.wallet("dear").get("XNO").free == carried
    fill(ex, [opp.sell_intent("x1", float(carried), now)], now)
    # independently: 200 XNO bought at the ask plus fee, sold 1% higher less fee
    profit = 200.0 * XNO_ASK * GAP * (1 - FEE) - 200.0 * XNO_ASK * (1 + FEE)
    assert usdt(ex) - 10_000.0 == pytest.approx(profit, rel=1e-6)
    assert opp.gross_profit == pytest.approx(profit, rel=1e-9)
    assert opp.expected_profit == pytest.approx(profit - opp.time_risk)
    assert [e.kind for e in ex.accounts.ledger if e.asset == "XNO" and e.kind.startswith("transfer")] == [
        "transfer",
        "transfer",
    ]


def test_time_in_transit_is_charged_against_the_edge() -> None:
    ex, now = exchange(), 1_700_000_000 * S
    ex.deposit("cheap", "USDT", 10_000.0, now)
    calm = books(ex, "XNO/USDT", XNO_ASK, 400.0, now)
    assert calm.best("XNO/USDT", free(ex)) is not None  # type: ignore[arg-type]
    wild = books(ex, "XNO/USDT", XNO_ASK, 400.0, now)
    wild.sigma = 0.01  # 1% per √s: a second in transit now costs more than the 0.8% edge
    assert wild.best("XNO/USDT", free(ex)) is None  # type: ignore[arg-type]


def test_btc_settles_too_slowly_to_carry_and_trades_only_against_inventory() -> None:
    ex, now = exchange(), 1_700_000_000 * S
    ex.deposit("cheap", "USDT", 50_000.0, now)
    scanner = books(ex, "BTC/USDT", BTC_ASK, 1.0, now)
    assert scanner.best("BTC/USDT", free(ex)) is None  # type: ignore[arg-type]  # 30 min in transit: refused
    ex.deposit("dear", "BTC", 1.0, now)
    opp = scanner.best("BTC/USDT", free(ex))  # type: ignore[arg-type]
    assert opp is not None and opp.mode == "inventory" and opp.time_risk == 0.0
    rule = default_transfers()["BTC"]
    assert opp.transfer_cost == pytest.approx(rule.fee * BTC_ASK * GAP)
    now = fill(ex, opp.intents("b1", now), now)  # both legs at once
    profit = 0.5 * BTC_ASK * GAP * (1 - FEE) - 0.5 * BTC_ASK * (1 + FEE)
    assert usdt(ex) - 50_000.0 == pytest.approx(profit, rel=1e-6)
    # rebalance: the BTC bought on the cheap venue goes back to the dear one, fee paid, 30 min later
    transfer = ex.transfer("cheap", "dear", "BTC", 0.5, now)
    assert transfer.settles_ns - transfer.sent_ns == rule.settle_s * S and float(transfer.fee) == rule.fee
    ex.advance(transfer.settles_ns)
    assert float(ex.accounts.wallet("dear").get("BTC").free) == pytest.approx(1.0 - rule.fee)
    # value restored to the starting inventory, less the transfer fee: the opportunity's expected profit
    value = usdt(ex) - 50_000.0 - rule.fee * BTC_ASK * GAP
    assert value == pytest.approx(opp.expected_profit, rel=1e-6)
