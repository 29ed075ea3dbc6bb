"""The order gateway: one interface to a venue, simulated (`PaperGateway`) or real (`CcxtGateway`).

The executor only talks to this interface, so paper and live trading share every line above it.
A gateway reports what happened through ``poll()`` (order events with fills) and ``drain_ledger()``
(the balance changes those events and the venue's own actions — interest, transfers — caused).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from shared.paper import LedgerEntry, PaperExchange, dec
from shared.paper.positions import Position
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, Trade

Clock = Callable[[], int]
Report = tuple[OrderEvent, int]  # the event, and when it reaches us (ns; 0: as soon as stored)


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """An order the venue reports as open."""

    client_order_id: str
    exchange: str
    symbol: str
    side: str
    amount: Decimal
    filled: Decimal
    price: Decimal | None
    status: str


@dataclass(frozen=True, slots=True)
class VenueBalance:
    exchange: str
    wallet: str  # spot | cross | isolated:BASE/QUOTE | futures
    asset: str
    free: Decimal
    locked: Decimal
    borrowed: Decimal = Decimal(0)
    interest: Decimal = Decimal(0)


class Gateway(Protocol):
    """What the executor needs from a venue."""

    async def submit(self, intent: OrderIntent) -> None:
        """Send a new order or, when ``intent.cancel``, a cancel; the outcome arrives via ``poll``."""
        ...

    async def poll(self) -> list[Report]:
        """Reports the venue has sent since the last call, with the ledger entries they caused
        available from ``drain_ledger`` at the same moment (store both together)."""
        ...

    def drain_ledger(self) -> list[LedgerEntry]: ...

    def on_report(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when a report arrives between two ``poll`` calls (an update the venue pushed), so the
        host polls at once instead of at its idle period."""
        ...

    async def knows(self, client_order_id: str, exchange: str, symbol: str) -> bool | None:
        """Whether the venue has ever received this order (reconciliation after a crash): True, False
        only when it certainly never will, None when that cannot be known now (never resend then)."""
        ...

    def track(self, intent: OrderIntent) -> None:
        """Report an order whose outcome ``knows`` could not tell as ``unknown`` and keep looking it up;
        what became of it arrives through ``poll``."""
        ...

    async def audit(self) -> dict[str, list[str]]:
        """Compare the venues' balances and open orders with what our reports say: venue -> differences."""
        ...

    async def open_orders(self) -> list[VenueOrder]: ...

    async def balances(self) -> list[VenueBalance]: ...

    async def borrow(self, exchange: str, asset: str, amount: Decimal, wallet: str) -> None: ...

    async def repay(self, exchange: str, asset: str, amount: Decimal, wallet: str) -> None: ...

    async def withdraw(self, exchange: str, asset: str, amount: Decimal, address: str, to_venue: str = "") -> str: ...

    def positions(self) -> list[Position]: ...

    async def close(self) -> None: ...


class PaperGateway:
    """The paper exchange behind the gateway interface; fed market data by the executor."""

    def __init__(self, exchange: PaperExchange, clock: Clock = time.time_ns) -> None:
        self.exchange = exchange
        self.clock = clock
        self._ledger_cursor = 0

    def on_market_data(self, message: BookUpdate | Trade) -> None:
        if isinstance(message, BookUpdate):
            self.exchange.on_book(message)
        else:
            self.exchange.on_trade(message)

    async def submit(self, intent: OrderIntent) -> None:
        self.exchange.submit(intent, self.clock())

    async def poll(self) -> list[Report]:
        # The simulated venue's state is stored when it changes; only delivery waits for the latency.
        return self.exchange.take_reports(self.clock())

    def drain_ledger(self) -> list[LedgerEntry]:
        ledger = self.exchange.accounts.ledger
        new, self._ledger_cursor = ledger[self._ledger_cursor :], len(ledger)
        return new

    def on_report(self, wake: Callable[[], None]) -> None:
        return None  # the simulated venue's reports are due at known times: the host polls then

    async def knows(self, client_order_id: str, exchange: str, symbol: str) -> bool | None:
        return client_order_id in self.exchange.orders

    def track(self, intent: OrderIntent) -> None:
        raise AssertionError("the paper venue always knows its orders")

    async def audit(self) -> dict[str, list[str]]:
        return {}  # the simulated venue is the record itself

    async def open_orders(self) -> list[VenueOrder]:
        return [
            VenueOrder(o.client_order_id, o.venue, o.symbol, o.side, o.amount, o.filled, o.price, o.status)
            for o in self.exchange.open_orders()
        ]

    async def balances(self) -> list[VenueBalance]:
        return [
            VenueBalance(v, w, a, b.free, b.locked, b.borrowed, b.interest)
            for (v, w), wallet in self.exchange.accounts.wallets.items()
            for a, b in wallet.balances.items()
        ]

    async def borrow(self, exchange: str, asset: str, amount: Decimal, wallet: str) -> None:
        self.exchange.borrow(exchange, wallet, asset, amount, self.clock())

    async def repay(self, exchange: str, asset: str, amount: Decimal, wallet: str) -> None:
        self.exchange.repay(exchange, wallet, asset, amount, self.clock())

    async def withdraw(self, exchange: str, asset: str, amount: Decimal, address: str, to_venue: str = "") -> str:
        """Move ``amount`` to another paper venue (``to_venue``); ``address`` is informational here."""
        if not to_venue:
            raise ValueError("paper withdrawals need the receiving venue (to_venue)")
        return self.exchange.transfer(exchange, to_venue, asset, dec(amount), self.clock()).transfer_id

    def positions(self) -> list[Position]:
        """Positions with their margin loan, interest and (isolated) liquidation price filled in."""
        ex = self.exchange
        for pos in ex.positions.values():
            if pos.margin_mode == "spot":
                continue
            base, quote = pos.symbol.split("/", 1)
            name = "cross" if pos.margin_mode == "cross" else f"isolated:{pos.symbol}"
            wallet = ex.accounts.wallet(pos.venue, name)
            loan = wallet.get(base) if wallet.get(base).borrowed else wallet.get(quote)
            pos.borrowed, pos.interest = loan.borrowed, loan.interest
            if pos.margin_mode == "isolated":
                pos.liquidation_price = ex.liquidation_price(pos.venue, pos.symbol)
        return list(ex.positions.values())

    async def close(self) -> None:
        return None
