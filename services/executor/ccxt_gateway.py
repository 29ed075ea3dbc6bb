"""Live orders through ccxt (async), behind the same `Gateway` interface as the paper exchange.

Live trading has three gates (DESIGN.md, Safety): ``TRADEWIND_MODE=live`` with ``TRADEWIND_LIVE=1``,
API keys for every live venue (environment or secret files, never logged), and every risk limit of
every live venue set explicitly (``shared.pretrade.missing_limits``). ``live_gate`` names the first
closed one.
"""

from __future__ import annotations

from services.executor.ccxt_account import make_exchange
from services.executor.ccxt_outcomes import is_refusal
from services.executor.ccxt_venue import CcxtGateway
from shared.config import Settings
from shared.pretrade import missing_limits

__all__ = ["CcxtGateway", "LiveGateClosed", "is_refusal", "live_gate", "make_exchange"]


class LiveGateClosed(RuntimeError):
    """Live trading was asked for but one of its gates is closed; the message says which."""


def live_gate(settings: Settings) -> str | None:
    """Return why live orders are not allowed (naming the gate and the variable to set), or None
    when every gate is open: mode live, ``TRADEWIND_LIVE=1``, non-empty API key and secret for every
    live venue, every risk limit set for every live venue itself (``missing_limits``), and
    withdrawals only to a well-formed allow-list."""
    if settings.mode != "live":
        return f"mode gate closed: mode is {settings.mode!r}: live orders need TRADEWIND_MODE=live"
    if not settings.live:
        return "opt-in gate closed: set TRADEWIND_LIVE=1"
    venues = settings.executor.live_venues
    if not venues:
        return (
            "venue gate closed: no live venue configured "
            "(set TRADEWIND_EXECUTOR__LIVE_VENUES__<venue>__API_KEY and __SECRET)"
        )
    for name, venue in sorted(venues.items()):
        for field, secret in (("api_key", venue.api_key), ("secret", venue.secret)):
            if secret is None or not secret.get_secret_value().strip():  # an empty key must not pass
                return (
                    f"API key gate closed: live venue {name!r} has no {field} "
                    f"(set TRADEWIND_EXECUTOR__LIVE_VENUES__{name}__{field.upper()} in the environment "
                    "or a TRADEWIND_SECRETS_DIR file; never on the command line)"
                )
    missing = missing_limits(settings.risk, sorted(venues))
    if missing:
        return "risk limit gate closed: " + "; ".join(missing)
    for name, venue in sorted(venues.items()):
        for asset, addresses in sorted(venue.withdraw_allowlist.items()):
            blank = not asset.strip() or any(not a.strip() or a != a.strip() for a in addresses)
            if blank:  # an empty address on the list would let an empty or mistyped withdrawal through
                return (
                    f"withdrawal gate closed: live venue {name!r} allow-list for {asset!r} has an empty "
                    f"or padded address (fix TRADEWIND_EXECUTOR__LIVE_VENUES__{name}__WITHDRAW_ALLOWLIST; "
                    "leave it unset to keep withdrawals off)"
                )
    return None
