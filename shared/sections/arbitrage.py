"""Settings of the arbitrage area (`TRADEWIND_ARBITRAGE__...`)."""

from pydantic import Field

from shared.sections.base import Section


class ArbitrageSettings(Section):
    """Cycle detection within one venue; also the defaults of `tradewind arb scan`."""

    fee_bps: float = Field(
        10.0,
        ge=0,
        lt=10_000,
        description="taker fee per leg, in basis points, where the market list has none",
    )
    max_len: int = Field(4, ge=3, le=4, description="longest cycle enumerated (3 or 4 legs)")
    start_assets: list[str] = Field(
        default_factory=list,
        description="assets a cycle may start and end in, preferred first; empty: any (hubs preferred)",
    )
    min_net_return: float = Field(
        0.0, ge=0, description="a cycle is reported only above this net return at the top of the book"
    )
