"""Settings of the risk area (`TRADEWIND_RISK__...`)."""

from shared.sections.base import Section


class RiskSettings(Section):
    """Settings of the risk area."""
