"""Settings of the trainer area (`TRADEWIND_TRAINER__...`)."""

from shared.sections.base import Section


class TrainerSettings(Section):
    """Settings of the trainer area."""
