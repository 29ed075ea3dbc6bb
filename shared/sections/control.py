"""Settings of the signed control plane (`TRADEWIND_CONTROL__...`): the HMAC keys of ``risk:control``.

Two keys, two authorities (``shared.signing``): the risk key signs the risk service's controls and
heartbeats and the executor's own reconcile halts; the operator key signs `tradewind halt/resume`.
Only operator-signed controls may lift a human halt or loosen a limit. Keys come from the
environment or a secret file (``TRADEWIND_SECRETS_DIR/tradewind_control``, JSON), never from the
command line; `tradewind up` generates both per var dir when they are unset.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.sections.base import Section


class ControlSettings(Section):
    """The keys that sign ``risk:control`` and how old a signed control may be."""

    risk_key: SecretStr | None = Field(None, description="signs the risk service's and the executor's controls")
    operator_key: SecretStr | None = Field(None, description="signs `tradewind halt/resume` (the operator)")
    max_age_s: float = Field(
        60.0,
        gt=0,
        description="a control signed longer ago is stale and ignored (heartbeats: risk.heartbeat_timeout_s);"
        " the durable halt set, not the stream, brings a restarted service up to date",
    )
