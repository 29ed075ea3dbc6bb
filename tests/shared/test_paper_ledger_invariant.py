"""Ledger invariant: every balance is initial + fills - fees - interest ± transfers, exactly.

A seeded random session on the recorded book (spot and margin orders, borrowing, transfers);
fills and fees are re-added here from the order events the exchange reported, not from its ledger.
"""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from shared.paper import PaperExchange
from shared.paper.recorded import read_binance_capture
from shared.schemas import BookUpdate, OrderEvent, OrderIntent
from shared.sections.executor import default_transfers, default_venues

CAPTURE = Path(__file__).parent.parent / "data" / "executor" / "binance_btcusdt_20240809_20s.gz"


def d(x: float) -> Decimal:
    return Decimal(repr(x))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_balances_equal_initial_plus_fills_minus_fees_interest_plus_transfers(seed: int) -> None:
    rng = random.Random(seed)
    ex = PaperExchange(default_venues(), transfers=default_transfers(), seed=seed)
    initial = {
        ("binance", "spot", "USDT"): Decimal(50_000),
        ("binance", "spot", "BTC"): Decimal(1),
        ("binance", "cross", "USDT"): Decimal(20_000),
        ("kraken", "spot", "XNO"): Decimal(500),
    }
    for (venue, wallet, asset), amount in initial.items():
        ex.deposit(venue, asset, amount, 0, wallet=wallet)
    events: list[OrderEvent] = []
    modes: dict[str, str] = {}
    n = 0
    last = 0
    for m in read_binance_capture(CAPTURE):
        (ex.on_book if isinstance(m, BookUpdate) else ex.on_trade)(m)  # type: ignore[operator]
        last = m.recv_ts
        book = ex.book("binance", "BTC/USDT")
        if book.best_bid() is None or rng.random() > 0.2:
            events += ex.poll(last)
            continue
        n += 1
        side = rng.choice(["buy", "sell"])
        kind = rng.choice(["market", "limit", "ioc", "post_only"])
        mode = rng.choice([None, None, "cross"])
        price = book.best_bid() if side == "buy" else book.best_ask()
        price = round(price + rng.choice([-1, 0, 1]) * 0.5, 2)
        cid = f"o{n}"
        modes[cid] = mode or "spot"
        ex.submit(
            OrderIntent(
                cid,
                "binance",
                "BTC/USDT",
                side,
                kind,
                round(rng.uniform(0.001, 0.05), 5),  # type: ignore[arg-type]
                last,
                price=None if kind == "market" else price,
                margin_mode=mode,
            ),
            last,
        )
        if n == 5:
            ex.transfer("kraken", "binance", "XNO", 120, last)
        if n % 7 == 0:
            ex.submit(OrderIntent(f"o{n - 1}", "binance", "BTC/USDT", "buy", "limit", 0.0, last, cancel=True), last)
        events += ex.poll(last)
    ex.advance(last + 5 * 3_600_000_000_000)  # five hours of interest on what is still borrowed
    events += ex.poll(last + 5 * 3_600_000_000_000)

    expected: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal, initial)
    seen = set()
    fills = 0
    for e in events:
        wallet = modes.get(e.client_order_id, "cross")
        for f in e.fills:
            assert f.fill_id not in seen, "a fill was reported twice"
            seen.add(f.fill_id)
            fills += 1
            sign = 1 if e.side == "buy" else -1
            expected[("binance", wallet, "BTC")] += sign * d(f.amount)
            expected[("binance", wallet, "USDT")] -= sign * d(f.amount) * d(f.price)
            expected[("binance", wallet, f.fee_asset)] -= d(f.fee)
    for entry in ex.accounts.ledger:
        if entry.kind == "interest" or entry.kind in ("transfer", "transfer_fee"):
            expected[(entry.venue, entry.wallet, entry.asset)] += entry.delta
    assert fills > 10
    assert any(e.kind == "interest" for e in ex.accounts.ledger), "the session should have borrowed"
    assert ex.accounts.wallet("binance").get("XNO").free == Decimal(120)
    for (venue, wallet), w in ex.accounts.wallets.items():
        for asset, bal in w.balances.items():
            assert bal.net == expected[(venue, wallet, asset)], (venue, wallet, asset)
            assert bal.net == ex.accounts.ledger_sum(venue, wallet, asset)
            assert bal.locked >= 0
