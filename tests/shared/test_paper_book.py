"""The paper book keeps its touch as levels come and go (no scan per update) and always agrees with a scan."""

from __future__ import annotations

import random
from decimal import Decimal

from shared.paper.book import SimBook
from shared.schemas import BookUpdate


def update(
    seq: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]], snapshot: bool = False
) -> BookUpdate:
    return BookUpdate("binance", "BTC/USDT", seq, seq, seq, bids, asks, snapshot=snapshot)


def test_the_touch_agrees_with_a_scan_through_random_updates_takes_and_snapshots() -> None:
    rng = random.Random(7)
    book = SimBook()
    for seq in range(1, 5_000):
        prices = [round(100 + rng.randint(-40, 40) * 0.5, 1) for _ in range(rng.randint(1, 6))]
        levels = [(p, 0.0 if rng.random() < 0.4 else rng.random()) for p in prices]
        bids = [(p, a) for p, a in levels if p < 100]
        asks = [(p, a) for p, a in levels if p >= 100]
        book.apply(update(seq, bids, asks, snapshot=rng.random() < 0.01))
        if rng.random() < 0.1 and book.asks:  # a taker buy consumes the best ask (or part of it)
            book.take("buy", book.walk("buy", Decimal(str(rng.random())), None))
        if rng.random() < 0.1 and book.bids:
            book.take("sell", book.walk("sell", Decimal(str(rng.random())), None))
        assert book.best_bid() == (max(book.bids) if book.bids else None), seq
        assert book.best_ask() == (min(book.asks) if book.asks else None), seq


def test_removing_the_best_level_finds_the_next_one() -> None:
    book = SimBook()
    book.apply(update(1, [(99.0, 1.0), (98.0, 2.0)], [(101.0, 1.0), (102.0, 1.0)], snapshot=True))
    assert (book.best_bid(), book.best_ask()) == (99.0, 101.0)
    book.apply(update(2, [(99.0, 0.0), (99.5, 0.0)], [(101.0, 0.0), (100.5, 3.0)]))
    assert (book.best_bid(), book.best_ask()) == (98.0, 100.5)
    assert book.mid() == Decimal("99.25")
