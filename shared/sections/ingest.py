"""Settings of the ingest area (`TRADEWIND_INGEST__...`)."""

from shared.sections.base import Section


class IngestSettings(Section):
    """Settings of the ingest area."""
