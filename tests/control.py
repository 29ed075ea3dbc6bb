"""Signed ``risk:control`` for tests that play the operator or the risk service (shared.signing).

Give a service ``control=KEYS`` in its settings, and put controls on the stream through ``xadd``
(or ``signed`` them first): an unsigned control is refused by every consumer.
"""

from __future__ import annotations

from pydantic import SecretStr
from redis.asyncio import Redis

from shared.schemas import RiskControl, encode, streams
from shared.sections.control import ControlSettings
from shared.signing import ENV, OPERATOR, RISK, Signer

KEYS = ControlSettings(risk_key=SecretStr("test-risk-key"), operator_key=SecretStr("test-operator-key"))
SIGNERS = {role: Signer.of(KEYS, role) for role in (RISK, OPERATOR)}


def signed(control: RiskControl, role: str = OPERATOR) -> RiskControl:
    return SIGNERS[role].sign(control)


async def xadd(redis: Redis, control: RiskControl, role: str = OPERATOR) -> bytes:
    """Append ``control`` to risk:control signed as ``role`` (what shared.halts.send does, minus the halt set)."""
    entry: bytes = await redis.xadd(streams.RISK_CONTROL, {streams.FIELD: encode(signed(control, role))})
    return entry


# What `tradewind halt/resume` needs in its environment to sign as the operator
CLI_ENV = {ENV[OPERATOR]: "test-operator-key"}
