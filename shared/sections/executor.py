"""Settings of the executor area (`TRADEWIND_EXECUTOR__...`)."""

from shared.sections.base import Section


class ExecutorSettings(Section):
    """Settings of the executor area."""
