"""The executor's side of the strategy protocol: build the strategies, keep the books, call the hooks.

Every strategy is called the same way: the hooks its ``feeds`` name, in registry order, and the
intents they return are handed back to the executor, which executes them at once
(``services.executor.order_path``: claimed, journaled to ``orders:intents`` in the same Redis round
trip, checked, sent). A strategy that fails to start stays idle; one whose records cannot be
stored is logged: neither may stall market data or orders.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from services.executor.strategies.base import Feed, Strategy, StrategyContext
from services.executor.strategies.registry import FACTORIES, Factory, build_strategies
from shared.paper.book import SimBook
from shared.schemas import BookUpdate, OrderEvent, OrderIntent, PolicyUpdate, Trade

log = logging.getLogger(__name__)

FEEDS: tuple[Feed, ...] = ("book", "trade", "order_event", "policy")


class StrategyHost:
    """The strategies the settings turn on (``strategies``, by name) and the books they read."""

    def __init__(self, ctx: StrategyContext, factories: Mapping[str, Factory] = FACTORIES) -> None:
        self.by_name: dict[str, Strategy] = build_strategies(ctx, factories)
        self.books: dict[tuple[str, str], SimBook] = {}  # (exchange, symbol) -> the book after each update
        self._fed = {feed: [s for s in self.by_name.values() if feed in s.feeds] for feed in FEEDS}

    def wants(self, feed: Feed) -> bool:
        """Whether any strategy takes this feed (the executor follows its stream only then)."""
        return bool(self._fed[feed])

    def apply(self, update: BookUpdate) -> SimBook:
        """Apply a book update to the market's book; return the book."""
        book = self.books.get((update.exchange, update.symbol))
        if book is None:
            book = self.books[(update.exchange, update.symbol)] = SimBook()
        book.apply(update)
        return book

    def on_book(self, update: BookUpdate, book: SimBook) -> list[OrderIntent]:
        intents: list[OrderIntent] = []
        for strategy in self._fed["book"]:
            intents += strategy.on_book(update, book)
        return intents

    def on_trade(self, trade: Trade) -> list[OrderIntent]:
        intents: list[OrderIntent] = []
        for strategy in self._fed["trade"]:
            intents += strategy.on_trade(trade)
        return intents

    def on_order_events(self, events: Iterable[OrderEvent]) -> list[OrderIntent]:
        intents: list[OrderIntent] = []
        for event in events:
            for strategy in self._fed["order_event"]:
                intents += strategy.on_order_event(event)
        return intents

    async def on_policies(self, updates: Iterable[PolicyUpdate]) -> list[OrderIntent]:
        intents: list[OrderIntent] = []
        for update in updates:
            for strategy in self._fed["policy"]:
                intents += await strategy.on_policy(update)
        return intents

    async def start(self) -> list[OrderIntent]:
        intents: list[OrderIntent] = []
        for strategy in self.by_name.values():
            try:
                intents += await strategy.start()
            except Exception:
                log.exception("strategy %s failed to start; it stays idle", strategy.name)
        return intents

    async def flush(self) -> None:
        for strategy in self.by_name.values():
            try:
                await strategy.flush()
            except Exception:  # a strategy's records must not stall market data or orders
                log.exception("storing the records of strategy %s failed", strategy.name)

    async def stop(self) -> None:
        for strategy in self.by_name.values():
            try:
                await strategy.stop()
            except Exception:
                log.exception("stopping strategy %s failed", strategy.name)
