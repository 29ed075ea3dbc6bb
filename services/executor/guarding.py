"""What the executor tells the pre-trade guard (``shared.pretrade.PreTradeGuard``) about the venue.

The guard checks every intent inline, so it must already know, before the first one, what the
venue holds (free balances, margin levels, positions netted per base asset, resting orders), and
keep learning it from every batch of reports. A halt's cancels miss an order sent just before it
and acknowledged after: ``late_cancels`` catches those.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from services.executor.gateway import Gateway, Report, VenueBalance
from shared.config import Settings
from shared.pretrade import PreTradeGuard, split_symbol
from shared.schemas import OrderEvent, OrderIntent
from shared.sections.risk import LimitOverride, RiskSettings


def guarded_limits(settings: Settings) -> RiskSettings:
    """The risk settings the pre-trade guard enforces: no fee buffer on a venue that takes its fee out of
    what the order receives (Binance), where an order spends exactly its notional."""
    venues = dict(settings.risk.venues)
    for name, sim in settings.executor.venues.items():
        own = venues.get(name)
        if sim.fee_in == "received" and (own is None or "fee_buffer" not in own.model_fields_set):
            venues[name] = LimitOverride(**(own.model_dump(exclude_unset=True) if own else {}), fee_buffer=0.0)
    return settings.risk.model_copy(update={"venues": venues})


def learn_balances(guard: PreTradeGuard, gateway: Gateway, balances: Iterable[VenueBalance]) -> None:
    """Free spot balances, and the lowest margin level of each venue whose margin wallets moved."""
    margin_venues = set()
    for b in balances:
        if b.wallet == "spot":
            guard.set_free(b.exchange, b.asset, float(b.free))
        else:
            margin_venues.add(b.exchange)
    for venue, level in gateway.margin_levels(margin_venues).items():  # new margin orders need it
        guard.set_margin_level(venue, level)


async def learn_positions_and_orders(guard: PreTradeGuard, gateway: Gateway) -> None:
    """Positions (spot and margin netted per base asset; margin alone too) and the venue's resting orders."""
    now = time.time_ns()
    held: dict[tuple[str, str], float] = {}
    margin: dict[tuple[str, str], float] = {}  # a margin short's buy-back must be seen to reduce it
    for pos in gateway.positions():
        key = (pos.venue, split_symbol(pos.symbol)[0])
        held[key] = held.get(key, 0.0) + float(pos.amount)
        if pos.margin_mode != "spot":
            margin[key] = margin.get(key, 0.0) + float(pos.amount)
    for (venue, asset), amount in held.items():
        guard.set_position(venue, asset, amount)
    for (venue, asset), amount in margin.items():
        guard.set_margin_position(venue, asset, amount)
    for o in await gateway.open_orders():
        guard.on_order_event(OrderEvent(o.client_order_id, o.exchange, o.symbol, o.side, "accepted", now))  # type: ignore[arg-type]


def late_cancels(guard: PreTradeGuard, reports: list[Report], reduce_only: set[str]) -> list[OrderIntent]:
    """Feed order reports to the guard; return cancels for orders that came to rest on a halted venue.

    ``reduce_only`` holds the reduce-only orders sent and not yet acknowledged (a halt lets them rest);
    each report's order leaves it.
    """
    late = []
    for e, _ in reports:
        guard.on_order_event(e)
        was_reduce_only = e.client_order_id in reduce_only
        reduce_only.discard(e.client_order_id)
        halted = guard.halted or guard.venue_halted(e.exchange)
        if e.status in ("accepted", "partially_filled") and halted and not was_reduce_only:
            late.append(OrderIntent(e.client_order_id, e.exchange, e.symbol, e.side, "limit", 0.0, e.ts, cancel=True))
    return late
