"""Drive the arbitrage strategy against the paper exchange in simulated time (no Redis, no database).

The strategy sees market data through its own books (as in the executor); the paper exchange
has its own copy, so a test can move the venue's book under a running execution.
"""

from __future__ import annotations

from collections.abc import Callable

from services.executor.arbitrage.strategy import ArbitrageStrategy
from shared.paper import PaperExchange
from shared.paper.book import SimBook
from shared.schemas import BookUpdate, OrderEvent, OrderIntent
from shared.sections.arbitrage import ArbitrageSettings
from shared.sections.executor import VenueSim

VENUE = "paper"
MS = 1_000_000
Levels = list[tuple[float, float]]


class Harness:
    def __init__(
        self,
        settings: ArbitrageSettings,
        balances: dict[str, float],
        taker_fee: float = 0.001,
        fee_in: str = "received",
    ) -> None:
        self.now = 1_700_000_000_000_000_000
        sim = VenueSim(
            taker_fee=taker_fee,
            maker_fee=taker_fee,
            fee_in=fee_in,  # type: ignore[arg-type]
            order_latency_ms=1.0,
            report_latency_ms=1.0,
            latency_jitter_ms=0.0,
        )
        self.exchange = PaperExchange({VENUE: sim}, seed=1)
        for asset, amount in balances.items():
            self.exchange.deposit(VENUE, asset, amount, self.now)
        self.books: dict[str, SimBook] = {}
        self.sent: list[OrderIntent] = []
        self.events: list[OrderEvent] = []
        self.strategy = ArbitrageStrategy(
            settings,
            VENUE,
            "t",
            taker_fee=taker_fee,
            fee_in_quote=fee_in == "quote",
            free=self.free,
            clock=lambda: self.now,
        )
        self._seq = 0

    def free(self, asset: str) -> float:
        return float(self.exchange.accounts.wallet(VENUE).get(asset).free)

    def ledger(self, asset: str) -> float:
        return float(self.exchange.accounts.ledger_sum(VENUE, "spot", asset))

    def venue_book(self, symbol: str, bids: Levels, asks: Levels) -> None:
        """Change the venue's book only (the strategy has not seen it yet)."""
        self._seq += 1
        self.exchange.on_book(BookUpdate(VENUE, symbol, self._seq, self.now, self.now, bids, asks, snapshot=True))

    def book(self, symbol: str, bids: Levels, asks: Levels, seen_at: int | None = None) -> list[OrderIntent]:
        """A book update reaching both the venue and the strategy; return (and send) the intents it made."""
        self.venue_book(symbol, bids, asks)
        update = BookUpdate(VENUE, symbol, self._seq, self.now, seen_at or self.now, bids, asks, snapshot=True)
        book = self.books.setdefault(symbol, SimBook())
        book.apply(update)
        intents = self.strategy.on_book(symbol, book, update.recv_ts)
        self.send(intents)
        return intents

    def send(self, intents: list[OrderIntent]) -> None:
        for intent in intents:
            self.sent.append(intent)
            self.exchange.submit(intent, self.now)

    def run(self, ms: int = 50, between: Callable[[], None] | None = None) -> None:
        """Advance time ``ms`` milliseconds, delivering reports to the strategy and sending what it asks."""
        for _ in range(ms):
            self.now += MS
            for event in self.exchange.poll(self.now):
                self.events.append(event)
                self.send(self.strategy.on_event(event))
            if between is not None:
                between()
