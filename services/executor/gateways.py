"""Which venue a run trades on: the paper exchange, or real venues through ccxt behind the live gate."""

from __future__ import annotations

import logging

from services.executor.gateway import Gateway, PaperGateway
from shared.config import Settings
from shared.paper import PaperExchange

log = logging.getLogger(__name__)


def build_gateway(settings: Settings, run_id: str) -> Gateway:
    """Paper unless live trading is asked for; live refuses to start while any gate is closed."""
    ex = settings.executor
    if settings.mode == "live" or ex.gateway == "ccxt":
        from services.executor.ccxt_gateway import CcxtGateway, LiveGateClosed, live_gate

        closed = live_gate(settings)
        if closed:
            raise LiveGateClosed(f"live trading refused: {closed}")
        for venue in sorted(ex.live_venues):  # the limits the gate checked: the venue's own
            limits = settings.risk.venues[venue].model_dump(exclude_unset=True)
            log.warning("LIVE trading on %s: real orders, risk limits %s", venue, limits)
        return CcxtGateway(ex.live_venues)
    exchange = PaperExchange(
        ex.venues, transfers=ex.transfers, transfer_default=ex.transfer_default, seed=ex.seed, id_prefix=f"P{run_id}-"
    )
    return PaperGateway(exchange)
