"""The reference a live venue's balances are reconciled against, and when a reconciliation round may count.

The reference is one read of the venue's balances, moved since by every fill, fee and transfer we
recorded. A round reads the venue again and compares. A round counts only if nothing of that venue
happened while it read: an order placed, a report recorded or a transfer made between the read and the
comparison can be in one and not in the other (a fill counted twice, or not at all), and would halt the
venue for a difference that is not there. Such a round is skipped; the old reference, moved by what
happened, stays, and the next round compares against it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

Totals = dict[tuple[str, str], Decimal]  # (wallet, asset) -> total


class AuditReference:
    def __init__(self) -> None:
        self.expected: dict[str, Totals] = {}  # venue -> the reference, once read
        self._changes: Counter[str] = Counter()  # venue -> reports and ledger moves recorded so far
        self._acting: Counter[str] = Counter()  # venue -> requests that may move money, in flight now

    def moved(self, venue: str, wallet: str, asset: str, delta: Decimal) -> None:
        """Our records moved ``asset`` in ``wallet`` by ``delta``: so does the reference."""
        self._changes[venue] += 1
        expected = self.expected.get(venue)
        if expected is not None:
            expected[(wallet, asset)] = expected.get((wallet, asset), Decimal(0)) + delta

    def reported(self, venue: str) -> None:
        """A report of one of our orders was recorded (it may change what is open, without a move)."""
        self._changes[venue] += 1

    @contextlib.contextmanager
    def acting(self, venue: str) -> Iterator[None]:
        """Around a request that may move money or place an order: the venue is busy until it returns."""
        self._acting[venue] += 1
        try:
            yield
        finally:
            self._acting[venue] -= 1

    def acting_on(self) -> set[str]:
        return {venue for venue, n in self._acting.items() if n}

    def mark(self, venue: str) -> int:
        """Taken before a round's reads; ``quiet_since`` tells whether anything happened after it."""
        return self._changes[venue]

    def quiet_since(self, venue: str, mark: int) -> bool:
        return self._changes[venue] == mark and not self._acting[venue]
