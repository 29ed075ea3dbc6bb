"""The paper exchange on a real recorded Binance BTC/USDT book (tests/data/executor/README.md).

Expectations are computed here from the raw JSON of the capture, independently of the simulator.
"""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import pytest

from shared.paper import PaperExchange, load_binance_exchange_info
from shared.paper.recorded import read_binance_capture
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, Trade
from shared.sections.executor import VenueSim, default_transfers, default_venues

DATA = Path(__file__).parent.parent / "data" / "executor"
CAPTURE = DATA / "binance_btcusdt_20240809_20s.gz"
INFO = DATA / "binance_exchangeInfo_BTCUSDT_ETHUSDT_NKNUSDT_2021-10-12.json"
SYM = "BTC/USDT"
MS = 1_000_000


def raw_snapshot() -> dict:
    with gzip.open(CAPTURE, "rt") as f:
        for line in f:
            body = line.split(" ", 1)[1]
            if body.startswith('{"lastUpdateId"'):
                return json.loads(body)
    raise AssertionError("capture has no snapshot")


def venues(**changes: object) -> dict[str, VenueSim]:
    v = default_venues()
    v["binance"] = v["binance"].model_copy(update={"latency_jitter_ms": 0.0, **changes})
    return v


def exchange(**changes: object) -> tuple[PaperExchange, BookUpdate]:
    rules = {("binance", s): r for s, r in load_binance_exchange_info(INFO.read_text()).items()}
    ex = PaperExchange(venues(**changes), rules=rules, transfers=default_transfers(), seed=3)
    ex.deposit("binance", "USDT", 1_000_000, 0)
    ex.deposit("binance", "BTC", 10, 0)
    snap = next(m for m in read_binance_capture(CAPTURE) if isinstance(m, BookUpdate))
    ex.on_book(snap)
    return ex, snap


def intent(cid: str, side: str, kind: str, amount: float, price: float | None = None, **kw: object) -> OrderIntent:
    return OrderIntent(cid, "binance", SYM, side, kind, amount, 0, price=price, **kw)  # type: ignore[arg-type]


def run(ex: PaperExchange, it: OrderIntent, now: int) -> list[OrderEvent]:
    ex.submit(it, now)
    return [e for e in ex.poll(now + 1_000 * MS) if e.client_order_id == it.client_order_id]


def walk(levels: list[list[str]], amount: Decimal, reverse: bool) -> list[tuple[Decimal, Decimal]]:
    out, left = [], amount
    for p, q in sorted(((Decimal(p), Decimal(q)) for p, q in levels), reverse=reverse):
        if left <= 0:
            break
        take = min(left, q)
        out.append((p, take))
        left -= take
    return out


def test_market_buy_walks_the_recorded_book_level_by_level() -> None:
    ex, snap = exchange()
    raw = raw_snapshot()
    amount = Decimal("7.5")
    expected = walk(raw["asks"], amount, reverse=False)
    assert len(expected) > 3, "the order must span several levels to test the walk"
    events = run(ex, intent("m1", "buy", "market", float(amount)), snap.recv_ts)
    assert [e.status for e in events] == ["accepted", "filled"]
    fills = events[-1].fills
    assert [(Decimal(repr(f.price)), Decimal(repr(f.amount))) for f in fills] == expected
    avg = sum(p * q for p, q in expected) / amount
    assert events[-1].avg_price == pytest.approx(float(avg), rel=1e-12)
    assert all(f.fee_asset == "BTC" and f.liquidity == "taker" for f in fills)
    assert sum(Decimal(repr(f.fee)) for f in fills) == amount * Decimal("0.001")


def test_market_sell_never_fills_beyond_visible_depth() -> None:
    ex, snap = exchange()
    raw = raw_snapshot()
    visible = sum(Decimal(q) for _, q in raw["bids"])
    ex.deposit("binance", "BTC", 10_000, 0)
    events = run(ex, intent("m2", "sell", "market", float(visible) + 5), snap.recv_ts)
    assert events[-1].status == "cancelled"
    assert Decimal(repr(events[-1].filled)) == visible
    assert ex.book("binance", SYM).bids == {}


def test_ioc_stops_at_its_limit_price() -> None:
    ex, snap = exchange()
    raw = raw_snapshot()
    asks = sorted((Decimal(p), Decimal(q)) for p, q in raw["asks"])
    limit = asks[2][0]
    expected = sum(q for p, q in asks if p <= limit)
    events = run(ex, intent("i1", "buy", "ioc", 10.0, float(limit)), snap.recv_ts)
    assert Decimal(repr(events[-1].filled)) == expected
    assert events[-1].status == "cancelled"


def test_latency_delays_arrival_and_reports() -> None:
    ex, snap = exchange(order_latency_ms=20.0, report_latency_ms=30.0)
    t = snap.recv_ts
    ex.submit(intent("l1", "buy", "market", 0.01), t)
    assert ex.poll(t + 49 * MS) == []
    events = ex.poll(t + 50 * MS)
    assert [e.status for e in events] == ["accepted", "filled"]
    assert events[0].ts == t + 20 * MS  # the venue's time of acceptance


def test_rule_rejections_use_the_venues_reasons() -> None:
    ex, snap = exchange()
    bid = snap.bids[0][0]
    cases = {
        "venue.price_filter": intent("r1", "buy", "limit", 0.01, bid + 0.005),
        "venue.lot_size": intent("r2", "buy", "limit", 0.000015, bid),
        "venue.min_notional": intent("r3", "buy", "limit", 0.0001, bid),
        "venue.percent_price": intent("r4", "sell", "limit", 0.01, round(bid * 6, 2)),
        "venue.post_only_would_take": intent("r5", "buy", "post_only", 0.01, snap.asks[0][0]),
    }
    for reason, it in cases.items():
        events = run(ex, it, snap.recv_ts)
        assert [(e.status, e.reason) for e in events] == [("rejected", reason)], it.client_order_id
    ok = run(ex, intent("r6", "buy", "post_only", 0.01, bid), snap.recv_ts)
    assert [e.status for e in ok] == ["accepted"]


def test_queue_position_trades_then_cancels_pro_rata_then_fill() -> None:
    ex, snap = exchange(maker_fee=0.0002)
    t = snap.recv_ts
    bid, level = snap.bids[0]
    run(ex, intent("q1", "buy", "limit", 0.5, bid), t)
    order = ex.orders["q1"]
    assert order.queue_ahead == level  # the whole visible level is ahead of us

    def trade(amount: float, at: int, price: float = bid) -> list[OrderEvent]:
        ex.on_trade(Trade("binance", SYM, str(at), price, amount, "sell", at, at))
        return ex.poll(at + 100 * MS)

    assert trade(level / 2, t + 200 * MS) == []  # half the queue traded; nothing reaches us
    ahead = level - level / 2
    # The venue reports the level after the trade with 2.0 more: joiners, behind us.
    joined = level - level / 2 + 2.0
    ex.on_book(BookUpdate("binance", SYM, snap.seq + 1, t + 250 * MS, t + 250 * MS, [(bid, joined)], []))
    assert order.queue_ahead == pytest.approx(ahead, rel=1e-12)
    # Then 1.0 less with no trade: cancels, spread pro rata over the level (ahead and behind us).
    ex.on_book(BookUpdate("binance", SYM, snap.seq + 2, t + 300 * MS, t + 300 * MS, [(bid, joined - 1.0)], []))
    expected_ahead = ahead - 1.0 * ahead / joined
    assert order.queue_ahead == pytest.approx(expected_ahead, rel=1e-12)
    events = trade(expected_ahead + 0.2, t + 400 * MS)
    assert [(e.status, e.fills[0].amount) for e in events] == [("partially_filled", pytest.approx(0.2))]
    assert events[0].fills[0].liquidity == "maker"
    assert events[0].fills[0].fee == pytest.approx(0.2 * 0.0002)
    events = trade(1.0, t + 500 * MS, price=bid - 1.0)  # a trade through our price fills the rest
    assert events[-1].status == "filled"


def test_quote_fee_venue_charges_quote() -> None:
    ex, snap = exchange(fee_in="quote", taker_fee=0.006)
    events = run(ex, intent("f1", "buy", "market", 0.1), snap.recv_ts)
    fill = events[-1].fills[0]
    assert fill.fee_asset == "USDT"
    assert Decimal(repr(fill.fee)) == Decimal(repr(fill.price)) * Decimal("0.1") * Decimal("0.006")
    assert ex.accounts.wallet("binance").get("BTC").free == Decimal("10.1")


def test_margin_short_interest_and_forced_liquidation() -> None:
    ex, snap = exchange()
    wallet = f"isolated:{SYM}"
    ex.deposit("binance", "USDT", 2_000, 0, wallet=wallet)
    t = snap.recv_ts
    events = run(ex, intent("s1", "sell", "market", 0.05, margin_mode="isolated"), t)
    assert events[-1].status == "filled"
    btc = ex.accounts.wallet("binance", wallet).get("BTC")
    assert btc.borrowed == Decimal("0.05")
    hourly = Decimal("0.05") * Decimal("0.0002") / 24  # default BTC daily rate, charged per hour
    first = btc.interest
    assert first == hourly.quantize(Decimal("1e-8"), rounding="ROUND_UP")
    hour = 3_600_000_000_000
    ex.advance((t // hour + 3) * hour)  # three more hour boundaries
    assert btc.interest == 4 * first
    level = ex.margin_level("binance", wallet)
    assert level is not None and level > Decimal("1.3")
    liq = ex.liquidation_price("binance", SYM)
    assert liq is not None
    # At the liquidation price the margin level is exactly the venue's threshold.
    usdt = ex.accounts.wallet("binance", wallet).get("USDT")
    assert float(usdt.free / ((btc.borrowed + btc.interest) * liq)) == pytest.approx(1.1, rel=1e-9)
    # The market rallies through the liquidation price: the wallet is liquidated.
    p = float(liq) * 1.01
    now = (t // hour + 3) * hour + 1
    ex.on_book(BookUpdate("binance", SYM, 1, now, now, [(p - 0.01, 5.0)], [(p, 5.0), (p + 1, 5.0)], snapshot=True))
    kinds = [n.kind for n in ex.notices]
    assert kinds == ["liquidation"]
    assert btc.borrowed == 0 and btc.interest == 0
    liquidation = [e for e in ex.poll(now + 10**9) if e.client_order_id.startswith("liq-")]
    assert liquidation and liquidation[-1].status == "filled"


def test_margin_call_before_liquidation() -> None:
    ex, snap = exchange()
    wallet = f"isolated:{SYM}"
    ex.deposit("binance", "USDT", 2_000, 0, wallet=wallet)
    run(ex, intent("s2", "sell", "market", 0.05, margin_mode="isolated"), snap.recv_ts)
    w = ex.accounts.wallet("binance", wallet)
    debt = w.get("BTC").borrowed + w.get("BTC").interest
    p = float(w.get("USDT").free / (debt * Decimal("1.2")))  # margin level 1.2: call, no liquidation
    now = snap.recv_ts + 10**9
    ex.on_book(BookUpdate("binance", SYM, 2, now, now, [(p - 0.02, 5.0)], [(p + 0.02, 5.0)], snapshot=True))
    assert [n.kind for n in ex.notices] == ["margin_call"]


def test_transfers_settle_after_the_assets_time_with_its_fee() -> None:
    ex, _ = exchange()
    ex.deposit("kraken", "XNO", 100, 0)
    t0 = 10**18
    nano = ex.transfer("kraken", "binance", "XNO", 40, t0)
    btc = ex.transfer("binance", "kraken", "BTC", 1, t0)
    ex.advance(t0 + 999 * MS)
    assert ex.accounts.wallet("binance").get("XNO").free == 0
    ex.advance(t0 + 1000 * MS)
    assert ex.accounts.wallet("binance").get("XNO").free == Decimal(40) == nano.amount
    ex.advance(t0 + 1799 * 10**9)
    assert ex.accounts.wallet("kraken").get("BTC").free == 0
    ex.advance(t0 + 1800 * 10**9)
    assert ex.accounts.wallet("kraken").get("BTC").free == Decimal(1) - Decimal("0.0002") == btc.amount


def test_same_seed_same_reports() -> None:
    def session(seed: int) -> list[OrderEvent]:
        rules = {("binance", s): r for s, r in load_binance_exchange_info(INFO.read_text()).items()}
        ex = PaperExchange(default_venues(), rules=rules, seed=seed)
        ex.deposit("binance", "USDT", 100_000, 0)
        out: list[OrderEvent] = []
        for i, m in enumerate(read_binance_capture(CAPTURE)):
            (ex.on_book if isinstance(m, BookUpdate) else ex.on_trade)(m)  # type: ignore[operator]
            if i % 25 == 5 and isinstance(m, BookUpdate) and m.snapshot is False:
                ex.submit(
                    intent(f"d{i}", "buy", "limit", 0.001, m.recv_ts and ex.book("binance", SYM).best_bid()), m.recv_ts
                )
            out += ex.poll(m.recv_ts)
        return out

    a, b = session(11), session(11)
    assert a == b and any(e.status == "filled" for e in a)
