"""The order gateway: one interface to a venue, simulated (`PaperGateway`) or real (`CcxtGateway`).

The executor only talks to this interface, so paper and live trading share every line above it.
A gateway reports what happened through ``poll()`` (order events with fills) and ``drain_ledger()``
(the balance changes those events and the venue's own actions — interest, transfers — caused).

What only a simulated venue needs (market data to fill against, its state rebuilt from our records,
its own timers and margin notices, balances readable without a round trip) are hooks with
defaults for a real venue, so the host never asks which kind of venue it talks to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from shared.paper import InsufficientBalance, LedgerEntry, PaperExchange, dec
from shared.paper.positions import Position
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, RiskEvent, Trade

log = logging.getLogger(__name__)

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


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """An order as our records hold it: the intent sent and what its reports said so far."""

    intent: OrderIntent
    status: str
    venue_order_id: str
    filled: Decimal
    avg_price: Decimal


class Records(Protocol):
    """What a gateway reads from and writes to the executor's records at start-up (``ExecutorStore``)."""

    async def balances(self) -> list[VenueBalance]: ...

    async def positions(self) -> list[Position]: ...

    async def orders_in(self, statuses: Sequence[str]) -> list[StoredOrder]: ...

    async def record(
        self,
        reports: Sequence[Report],
        ledger: Sequence[LedgerEntry],
        balances: Iterable[VenueBalance],
        positions: Iterable[Position],
    ) -> None: ...


OPEN_STATUSES = ("accepted", "partially_filled")


class TransferRefused(RuntimeError):
    """The venue definitely did not move the funds (any other error from ``Gateway.move``: it may have)."""


class Gateway(Protocol):
    """What the executor needs from a venue.

    The hooks after ``close`` have defaults for a real venue (the venue holds the truth, needs no
    market data and tells nothing without a round trip); a gateway subclassing this protocol
    inherits them, and the paper venue overrides them.
    """

    # Orders handed over in-process (no network wait): the executor's strategies may then submit from
    # the market-data handler (one hop); a venue across the network gets them through the intents stream,
    # so market data never waits on its HTTP round trip.
    in_process: bool = False

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

    async def knows(
        self, client_order_id: str, exchange: str, symbol: str, margin_mode: str | None = None
    ) -> bool | None:
        """Whether the venue has ever received this order (reconciliation after a crash): True, False
        only when it certainly never will, None when that cannot be known now (never resend then).
        ``margin_mode``: the order's, asked where the venue keeps such orders (its spot side knows none)."""
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

    async def move(self, exchange: str, asset: str, amount: Decimal, from_wallet: str, to_wallet: str) -> str:
        """Move funds between two wallets of one venue (an internal transfer); return the venue's transfer id.
        Raise ``TransferRefused`` when it certainly did not happen; any other error leaves it unknown."""
        ...

    def positions(self) -> list[Position]: ...

    async def close(self) -> None: ...

    poll_interval_s: float = 1.0  # longest wait between two polls while nothing is due

    async def restore(self, records: Records, initial_balances: Mapping[str, Mapping[str, float]]) -> None:
        """Rebuild the venue's state from our records before anything trades (a real venue holds its own)."""
        return None

    async def follow(self, order: StoredOrder) -> None:
        """An order an earlier run left open (our records hold its fills so far): report what becomes of it
        from there. A simulated venue restores its own orders in ``restore``."""
        return None

    async def record_start(self, records: Records, balances: list[VenueBalance]) -> None:
        """Store what the venue holds at start-up, as read for the guard: the risk service starts from it."""
        await records.record([], [], balances, self.positions())

    def on_market_data(self, message: BookUpdate | Trade) -> None:
        """Take one market data message (a simulated venue fills against it)."""
        return None

    def free_balance(self, venue: str, asset: str) -> float | None:
        """The free spot balance of ``asset`` when known without a round trip, else None."""
        return None

    def margin_levels(self, venues: Iterable[str]) -> dict[str, float | None]:
        """The lowest margin level of each venue's margin wallets (None: no loan), for the venues it can tell."""
        return {}

    def next_due(self) -> int | None:
        """When (ns) the venue next has something for ``poll``, if it knows; the host polls then."""
        return None

    def notices(self) -> list[RiskEvent]:
        """Risk events the venue raised itself since the last call (margin calls, liquidations)."""
        return []


class PaperGateway:
    """The paper exchange behind the gateway interface; fed market data by the executor."""

    poll_interval_s = 0.005  # reports are due at known times (``next_due``); this only bounds the wait
    in_process = True

    def __init__(self, exchange: PaperExchange, clock: Clock = time.time_ns) -> None:
        self.exchange = exchange
        self.clock = clock
        self._ledger_cursor = 0
        self._wake: Callable[[], None] = lambda: None

    def on_market_data(self, message: BookUpdate | Trade) -> None:
        """Move the simulated venue's book or match a trade; then the host polls (it may have filled orders)."""
        if message.exchange not in self.exchange.venues:
            return
        if isinstance(message, BookUpdate):
            self.exchange.on_book(message)
        else:
            self.exchange.on_trade(message)
        self._wake()

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
        self._wake = wake  # called after market data: reports then fall due at known times (next_due)

    async def knows(
        self, client_order_id: str, exchange: str, symbol: str, margin_mode: str | None = None
    ) -> bool | None:
        return client_order_id in self.exchange.orders

    def track(self, intent: OrderIntent) -> None:
        raise AssertionError("the paper venue always knows its orders")

    async def follow(self, order: StoredOrder) -> None:
        """``restore`` put the resting orders back in the paper book, all but those whose row held no intent then
        (a run died before storing it): such an order goes back once its intent is taken over."""
        i = order.intent
        if i.client_order_id not in self.exchange.orders:
            cost = order.filled * order.avg_price
            self.exchange.restore_order(i, order.venue_order_id, order.filled, cost, self.clock())

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

    async def move(self, exchange: str, asset: str, amount: Decimal, from_wallet: str, to_wallet: str) -> str:
        if exchange not in self.exchange.venues:
            raise TransferRefused(f"{exchange} is not a paper venue")
        try:
            return self.exchange.move(exchange, asset, amount, from_wallet, to_wallet, self.clock())
        except InsufficientBalance as exc:  # refused before any wallet changed
            raise TransferRefused(str(exc)) from None

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

    # ---- what only the simulated venue has ---------------------------------------------------

    async def restore(self, records: Records, initial_balances: Mapping[str, Mapping[str, float]]) -> None:
        """Rebuild the simulated venue from what earlier runs stored, or fund it the first time."""
        exchange, now = self.exchange, self.clock()
        stored = await records.balances()
        if not stored:
            for venue, assets in initial_balances.items():
                if venue in exchange.venues:
                    for asset, amount in assets.items():
                        exchange.deposit(venue, asset, amount, now, ref="initial")
            return
        for b in stored:
            exchange.restore_balance(b.exchange, b.wallet, b.asset, b.free + b.locked, b.borrowed, b.interest, now)
        for pos in await records.positions():
            exchange.positions[(pos.venue, pos.symbol, pos.margin_mode)] = pos
        for order in await records.orders_in(OPEN_STATUSES):
            cost = order.filled * order.avg_price
            exchange.restore_order(order.intent, order.venue_order_id, order.filled, cost, now)
        log.info("restored %d balances and the open orders of the paper venue", len(stored))

    async def record_start(self, records: Records, balances: list[VenueBalance]) -> None:
        return None  # the simulated venue was rebuilt from these very records

    def free_balance(self, venue: str, asset: str) -> float | None:
        wallet = self.exchange.accounts.wallets.get((venue, "spot"))
        balance = wallet.balances.get(asset) if wallet else None
        return float(balance.free) if balance else 0.0

    def margin_levels(self, venues: Iterable[str]) -> dict[str, float | None]:
        ex = self.exchange
        out: dict[str, float | None] = {}
        for venue in venues:
            levels = [ex.margin_level(v, w) for v, w in ex.accounts.wallets if v == venue and w != "spot"]
            known = [float(x) for x in levels if x is not None]
            out[venue] = min(known) if known else None
        return out

    def next_due(self) -> int | None:
        return self.exchange.next_due()

    def notices(self) -> list[RiskEvent]:
        notices, self.exchange.notices = self.exchange.notices, []
        return [
            RiskEvent(
                n.kind,
                n.ts,
                "critical" if n.kind == "liquidation" else "warning",
                n.venue,
                detail={"wallet": n.wallet, "margin_level": float(n.margin_level)},
            )
            for n in notices
        ]
