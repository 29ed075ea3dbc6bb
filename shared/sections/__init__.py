"""Settings sections, one module per area, so each area's settings live beside nothing else's.

`shared.config.Settings` composes them: ``TRADEWIND_INGEST__...``, ``TRADEWIND_EXECUTOR__...``, ...
"""
