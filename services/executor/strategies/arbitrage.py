"""Cycle arbitrage inside each configured venue, hosted by the executor.

One ``ArbitrageStrategy`` (``services.executor.arbitrage.strategy``) per venue of
``arbitrage.venues``: each takes its venue's book updates and the reports of its own orders, and
its opportunity and execution records are stored after every batch (``arb_opportunities``,
``arb_executions``) and published on ``arb:events``. Losing some records must not stall market
data or orders, so a failed write is logged and dropped.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar

from services.executor.arbitrage.markets import load_markets
from services.executor.arbitrage.records import ArbitrageStore, ExecutionRecord, OpportunityRecord
from services.executor.arbitrage.strategy import ArbitrageStrategy
from services.executor.strategies.base import Feed, StrategyBase, StrategyContext
from shared.paper.book import SimBook
from shared.schemas import AnyMessage, BookUpdate, OrderEvent, OrderIntent, streams

log = logging.getLogger(__name__)
Publish = Callable[[str, Sequence[AnyMessage]], Awaitable[object]]


def build(ctx: StrategyContext) -> CycleArbitrage | None:
    """The venues' cycle strategies when ``arbitrage.enabled`` (default: in replay mode only).

    Fees are the paper venue's taker fees, the ones the simulated fills will charge. A free balance
    the gateway cannot tell without a round trip counts as 0: the cycle then executes sequentially.
    """
    settings, arb = ctx.settings, ctx.settings.arbitrage
    if not (arb.enabled if arb.enabled is not None else settings.mode == "replay"):
        return None
    venues = {}
    for venue in arb.venues:
        sim = settings.executor.venues.get(venue)
        fee = sim.taker_fee if sim is not None else arb.fee_bps / 10_000
        path = arb.markets_files.get(venue)
        venues[venue] = ArbitrageStrategy(
            arb,
            venue,
            ctx.run_id,
            taker_fee=fee,
            fee_in_quote=sim is not None and sim.fee_in == "quote",
            free=functools.partial(_free, ctx.free_balance, venue),
            markets=load_markets(path, fee) if path is not None else None,
        )
    return CycleArbitrage(venues, ArbitrageStore(ctx.store.db), ctx.publish)


def _free(free_balance: Callable[[str, str], float | None], venue: str, asset: str) -> float:
    return free_balance(venue, asset) or 0.0


class CycleArbitrage(StrategyBase):
    """The per-venue cycle strategies behind the one strategy protocol."""

    name = ArbitrageStrategy.name
    feeds: ClassVar[frozenset[Feed]] = frozenset({"book", "order_event"})

    def __init__(
        self, venues: dict[str, ArbitrageStrategy], store: ArbitrageStore, publish: Publish | None = None
    ) -> None:
        self.venues = venues
        self.store = store
        self.publish = publish

    def on_book(self, update: BookUpdate, book: SimBook) -> list[OrderIntent]:
        venue = self.venues.get(update.exchange)
        return venue.on_book(update.symbol, book, update.recv_ts) if venue is not None else []

    def on_order_event(self, event: OrderEvent) -> list[OrderIntent]:
        """The next leg, or the unwind after a failed one, of a running cycle execution."""
        venue = self.venues.get(event.exchange)
        return venue.on_event(event) if venue is not None else []

    async def flush(self) -> None:
        for venue in self.venues.values():
            opportunities, executions = venue.drain()
            if not (opportunities or executions):
                continue
            await save_and_publish(self.store, self.publish, opportunities, executions)


async def save_and_publish(
    store: ArbitrageStore,
    publish: Publish | None,
    opportunities: Sequence[OpportunityRecord],
    executions: Sequence[ExecutionRecord],
) -> None:
    """Store records in PostgreSQL and put them on ``arb:events``; a failure of either is logged and dropped
    (records are reports: losing some must not stall market data or orders)."""
    try:
        await store.save(opportunities, executions)
    except Exception:
        log.exception("storing %d arbitrage records failed", len(opportunities) + len(executions))
    if publish is not None:
        try:
            await publish(streams.ARB_EVENTS, [*(o.event() for o in opportunities), *(e.event() for e in executions)])
        except Exception:
            log.exception("publishing %d arbitrage records on %s failed", len(opportunities) + len(executions),
                          streams.ARB_EVENTS)  # fmt: skip
