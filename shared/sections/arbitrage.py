"""Settings of the arbitrage area (`TRADEWIND_ARBITRAGE__...`)."""

from shared.sections.base import Section


class ArbitrageSettings(Section):
    """Settings of the arbitrage area."""
