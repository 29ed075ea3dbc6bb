"""Balances and the ledger, in exact decimals.

A wallet is one venue account: ``spot``, ``cross`` (cross margin) or ``isolated:BASE/QUOTE``.
Every change of an asset's net value (holdings - liabilities) is one ledger entry, so
``free + locked - borrowed - interest == sum(ledger deltas)`` holds exactly at all times;
borrowing and repaying move holdings and liabilities together and leave the net unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)

LedgerKind = str  # deposit, fill, fee, interest, transfer, transfer_fee, liquidation


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    venue: str
    wallet: str
    asset: str
    delta: Decimal
    kind: LedgerKind
    ref: str
    ts: int


@dataclass(slots=True)
class Balance:
    free: Decimal = ZERO
    locked: Decimal = ZERO
    borrowed: Decimal = ZERO
    interest: Decimal = ZERO

    @property
    def net(self) -> Decimal:
        return self.free + self.locked - self.borrowed - self.interest


class InsufficientBalance(Exception):
    """A wallet lacks the free amount an operation needs."""


@dataclass
class Wallet:
    venue: str
    name: str  # spot | cross | isolated:BASE/QUOTE
    balances: dict[str, Balance] = field(default_factory=dict)

    @property
    def is_margin(self) -> bool:
        return self.name != "spot"

    def get(self, asset: str) -> Balance:
        bal = self.balances.get(asset)
        if bal is None:
            bal = self.balances[asset] = Balance()
        return bal


class Accounts:
    """All wallets of all venues plus the ledger that explains every balance."""

    def __init__(self) -> None:
        self.wallets: dict[tuple[str, str], Wallet] = {}
        self.ledger: list[LedgerEntry] = []

    def wallet(self, venue: str, name: str = "spot") -> Wallet:
        key = (venue, name)
        w = self.wallets.get(key)
        if w is None:
            w = self.wallets[key] = Wallet(venue, name)
        return w

    def _post(self, w: Wallet, asset: str, delta: Decimal, kind: LedgerKind, ref: str, ts: int) -> None:
        if delta:
            self.ledger.append(LedgerEntry(w.venue, w.name, asset, delta, kind, ref, ts))

    def credit(self, w: Wallet, asset: str, amount: Decimal, kind: LedgerKind, ref: str, ts: int) -> None:
        """Add ``amount`` (may be negative) to free holdings and record why."""
        bal = w.get(asset)
        if amount < 0 and bal.free < -amount:
            raise InsufficientBalance(
                f"{w.venue}/{w.name}: {asset} free {bal.free} < {-amount} needed for {kind} {ref}"
            )
        bal.free += amount
        self._post(w, asset, amount, kind, ref, ts)

    def lock(self, w: Wallet, asset: str, amount: Decimal) -> None:
        bal = w.get(asset)
        if bal.free < amount:
            raise InsufficientBalance(f"{w.venue}/{w.name}: {asset} free {bal.free} < {amount} to lock")
        bal.free -= amount
        bal.locked += amount

    def unlock(self, w: Wallet, asset: str, amount: Decimal) -> None:
        bal = w.get(asset)
        bal.locked -= amount
        bal.free += amount

    def spend_locked(self, w: Wallet, asset: str, amount: Decimal, kind: LedgerKind, ref: str, ts: int) -> None:
        """Pay out of the locked part (a resting order filling)."""
        bal = w.get(asset)
        bal.locked -= amount
        self._post(w, asset, -amount, kind, ref, ts)

    def borrow(self, w: Wallet, asset: str, amount: Decimal) -> None:
        bal = w.get(asset)
        bal.borrowed += amount
        bal.free += amount

    def repay(self, w: Wallet, asset: str, amount: Decimal) -> Decimal:
        """Repay up to ``amount`` of interest first, then principal (Binance's order); return what was repaid."""
        bal = w.get(asset)
        amount = min(amount, bal.free, bal.borrowed + bal.interest)
        to_interest = min(amount, bal.interest)
        bal.interest -= to_interest
        bal.borrowed -= amount - to_interest
        bal.free -= amount
        return amount

    def accrue_interest(self, w: Wallet, asset: str, amount: Decimal, ref: str, ts: int) -> None:
        bal = w.get(asset)
        bal.interest += amount
        self._post(w, asset, -amount, "interest", ref, ts)

    def ledger_sum(self, venue: str, wallet: str, asset: str) -> Decimal:
        return sum((e.delta for e in self.ledger if e.venue == venue and e.wallet == wallet and e.asset == asset), ZERO)
