"""The one shape every strategy the executor hosts has: ``on_*`` hooks that return order intents.

The host (``services.executor.service``) keeps the books, feeds each strategy the streams it names
in ``feeds``, publishes what the hooks return on ``orders:intents`` (through the ordinary order
path: claim, pre-trade guard, gateway, storage) and knows nothing else of any strategy. Hooks on
market data and order reports are synchronous (they sit on the tick-to-order path); the ones that
need I/O (``start``, ``on_policy``, ``flush``, ``stop``) are coroutines.

A strategy is built from settings by its factory in ``registry``; what it needs from the host
(run id, records, free balances) comes in a ``StrategyContext``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, Literal, Protocol

from services.executor.store import ExecutorStore
from shared.config import Settings
from shared.paper.book import SimBook
from shared.schemas import AnyMessage, BookUpdate, OrderEvent, OrderIntent, PolicyUpdate, Trade

Feed = Literal["book", "trade", "order_event", "policy"]


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """What a strategy may use of its host."""

    settings: Settings
    run_id: str  # unique per executor process: part of every client order id
    store: ExecutorStore  # the executor's records (``store.db`` for a strategy's own tables)
    free_balance: Callable[[str, str], float | None]  # (venue, asset) -> free spot amount; None: unknown
    # Report records on a stream (``arb:events``): (stream, messages). None: records go to PostgreSQL only.
    publish: Callable[[str, Sequence[AnyMessage]], Awaitable[object]] | None = None
    # Move an asset to another venue: (from venue, asset, amount, address, to venue) -> the transfer's id.
    withdraw: Callable[[str, str, Decimal, str, str], Awaitable[str]] | None = None
    # Whether the venue ever received an order: (client order id, venue, symbol); None: cannot tell now.
    knows: Callable[[str, str, str], Awaitable[bool | None]] | None = None


class Strategy(Protocol):
    """A strategy hosted by the executor. ``feeds`` says which hooks the host calls."""

    name: str  # in client order ids and in the ``orders.strategy`` column
    feeds: ClassVar[frozenset[Feed]]

    async def start(self) -> list[OrderIntent]:
        """Restore what the strategy needs once the feeds are followed (nothing published after is missed);
        hooks may be called before it returns."""
        ...

    def on_book(self, update: BookUpdate, book: SimBook) -> list[OrderIntent]:
        """React to one book update; ``book`` is the host's book of that market after applying it."""
        ...

    def on_trade(self, trade: Trade) -> list[OrderIntent]: ...

    def on_order_event(self, event: OrderEvent) -> list[OrderIntent]:
        """React to a report on ``orders:events`` (every order's, not only this strategy's)."""
        ...

    async def on_policy(self, update: PolicyUpdate) -> list[OrderIntent]:
        """React to a policy promoted on ``policy:updates``."""
        ...

    async def flush(self) -> None:
        """Store what the last batch of market data or reports produced (records, never orders)."""
        ...

    async def stop(self) -> None: ...


class StrategyBase:
    """No-op hooks, so a strategy writes only the ones its ``feeds`` name."""

    name = "strategy"
    feeds: ClassVar[frozenset[Feed]] = frozenset()

    async def start(self) -> list[OrderIntent]:
        return []

    def on_book(self, update: BookUpdate, book: SimBook) -> list[OrderIntent]:
        return []

    def on_trade(self, trade: Trade) -> list[OrderIntent]:
        return []

    def on_order_event(self, event: OrderEvent) -> list[OrderIntent]:
        return []

    async def on_policy(self, update: PolicyUpdate) -> list[OrderIntent]:
        return []

    async def flush(self) -> None:
        return None

    async def stop(self) -> None:
        return None
