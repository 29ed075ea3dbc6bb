"""Positions per venue, symbol and margin mode, with average-cost realized PnL (exact decimals)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(slots=True)
class Position:
    venue: str
    symbol: str
    margin_mode: str  # spot | isolated | cross
    amount: Decimal = ZERO  # signed: negative is short
    entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO  # in quote, before fees
    borrowed: Decimal = ZERO  # margin: the loan financing it (base for a short, quote for a long)
    interest: Decimal = ZERO
    liquidation_price: Decimal | None = None

    def apply_fill(self, side: str, price: Decimal, qty: Decimal) -> None:
        """Update amount, average entry and realized PnL for one fill."""
        signed = qty if side == "buy" else -qty
        if self.amount == 0 or (self.amount > 0) == (signed > 0):
            total = self.amount + signed
            self.entry_price = (self.entry_price * abs(self.amount) + price * qty) / abs(total)
            self.amount = total
            return
        closing = min(qty, abs(self.amount))
        direction = 1 if self.amount > 0 else -1
        self.realized_pnl += (price - self.entry_price) * closing * direction
        self.amount += signed
        if self.amount == 0:
            self.entry_price = ZERO
        elif (self.amount > 0) != (direction > 0):  # flipped through zero
            self.entry_price = price

    def unrealized(self, mark: Decimal | None) -> Decimal:
        if mark is None or self.amount == 0:
            return ZERO
        return (mark - self.entry_price) * self.amount
