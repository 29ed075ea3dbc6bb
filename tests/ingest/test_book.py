"""The L2 book and the checksum helpers venues share."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from services.ingest.book import OrderBook, crc32, crc32_signed, interleave


def test_apply_sets_and_deletes_levels_and_top_is_sorted():
    book = OrderBook("BTC/USDT")
    book.load([(100.0, 1.0), (99.0, 2.0), (98.0, 0.0)], [(101.0, 1.0), (102.0, 3.0)], seq=10)
    book.apply([(99.0, 0.0), (100.5, 4.0)], [(101.0, 0.0), (101.5, 1.0)], seq=11)
    assert book.top(2) == ([(100.5, 4.0), (100.0, 1.0)], [(101.5, 1.0), (102.0, 3.0)])
    assert book.best() == ((100.5, 4.0), (101.5, 1.0)) and not book.crossed() and book.seq == 11
    book.apply([(102.0, 1.0)], [], seq=12)
    assert book.crossed()
    book.clear()
    assert len(book) == 0 and book.seq == -1 and book.best() == (None, None)


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 50), st.integers(0, 3)), max_size=300))
def test_book_equals_a_replay_of_its_deltas(ops):
    book = OrderBook("X")
    model: dict[bool, dict[float, float]] = {True: {}, False: {}}
    for is_bid, price, amount in ops:
        level = [(float(price), float(amount))]
        book.apply(level if is_bid else [], [] if is_bid else level, seq=1)
        if amount:
            model[is_bid][float(price)] = float(amount)
        else:
            model[is_bid].pop(float(price), None)
    assert book.bids == model[True] and book.asks == model[False]
    bids, asks = book.levels()
    assert bids == sorted(model[True].items(), reverse=True) and asks == sorted(model[False].items())


def test_text_levels_and_checksum_helpers():
    book = OrderBook("X", keep_text=True)
    book.apply_text([("0.05005", "0.00000500"), ("0.05004", "1.0")], [("0.05006", "2.5")], seq=1)
    book.apply_text([("0.05004", "0.0")], [], seq=2)
    assert book.top_text(10) == ([("0.05005", "0.00000500")], [("0.05006", "2.5")])
    assert interleave([("1", "a"), ("2", "b")], [("3", "c")]) == [("1", "a"), ("3", "c"), ("2", "b")]
    assert crc32("abc") == zlib.crc32(b"abc") == 891568578
    assert crc32_signed("checksum") == zlib.crc32(b"checksum") - (1 << 32) * (zlib.crc32(b"checksum") >= 1 << 31)
