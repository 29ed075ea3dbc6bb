"""Settings of the alerts service (`TRADEWIND_ALERTS__...`): where alerts go and how often.

A sink is on when its settings are set: the webhook with ``webhook_url``, Telegram with both
``telegram_token`` and ``telegram_chat_id``. The token is a secret (environment or secret file).
An empty value is unset (compose passes ``${VAR:-}`` through for sinks the user did not configure).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator

from shared.sections.base import Section


class AlertsSettings(Section):
    """Alert sinks, deduplication and rate limits."""

    enabled: bool = Field(True, description="`tradewind up` starts the alerts service")
    webhook_url: SecretStr | None = Field(None, description="a JSON POST per alert to this URL")
    telegram_token: SecretStr | None = Field(None, description="Telegram bot token (sendMessage)")
    telegram_chat_id: str | None = Field(None, description="the chat the bot writes to")
    telegram_api_url: str = Field("https://api.telegram.org", description="Bot API base URL (tests use a local fake)")
    timeout_s: float = Field(5.0, gt=0, description="one delivery attempt to one sink")
    retries: int = Field(2, ge=0, le=10, description="further attempts after a failed delivery")
    dedupe_s: float = Field(300.0, ge=0, description="the same alert (what and where) again within this is dropped")
    max_per_minute: int = Field(
        20, ge=1, description="alerts sent per minute at most; the rest are counted and summed up"
    )
    queue_size: int = Field(1000, ge=1, description="alerts waiting for the sinks; beyond this the oldest are dropped")
    feed_stale_after_s: float = Field(30.0, gt=0, description="alert when a venue's feed stays bad this long")
    arbitrage_poll_s: float = Field(5.0, gt=0, description="how often arb_executions is read for unwinds")

    @field_validator("webhook_url", "telegram_token", "telegram_chat_id", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value
