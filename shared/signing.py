"""The signed control plane: only the operator and the risk service steer ``risk:control``.

Redis ACLs cannot tell reading a stream from writing it, so authority travels in the message:
every ``RiskControl`` carries its signer (``risk`` or ``operator``), the wall-clock time it was
signed and an HMAC-SHA256 over everything else (its domain ``ts`` included). ``shared.halts.send``
signs, the one path that publishes controls; every consumer of ``risk:control`` passes a
``ControlGate.verify`` to its ``Consumer``, which dead-letters a refused entry at once
(``dlq:risk:control``) while the gate publishes a ``control_refused`` RiskEvent naming it.

What each key may do: both may halt; only the risk key proves the risk service alive (heartbeats);
only the operator key lifts a human halt or forces a resume, and loosens a limit (the pre-trade
guard refuses a ``set_limit`` from anyone else that raises one: ``PreTradeGuard.refusal``).
A control signed longer ago than ``control.max_age_s`` (heartbeats: ``risk.heartbeat_timeout_s``)
is stale: skipped, not dead-lettered, since a service that was down reads its backlog late and the
durable halt set (``shared.halts``) already gave it the halts in force. A copy of a fresh control
under another entry id is a replay and is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec
from pydantic import SecretStr

from shared.bus import Bus, Delivery
from shared.schemas import RiskControl, RiskEvent, encode, streams
from shared.sections.control import ControlSettings

log = logging.getLogger(__name__)

RISK, OPERATOR = "risk", "operator"
ROLES = (RISK, OPERATOR)
ENV = {RISK: "TRADEWIND_CONTROL__RISK_KEY", OPERATOR: "TRADEWIND_CONTROL__OPERATOR_KEY"}
SIGNING_SERVICES = frozenset({"executor", "risk"})  # the services `tradewind up` hands the keys to
KEY_FILE = "tradewind_control"  # under <var_dir>/secrets: the secret-file format (JSON of the section)


_CANONICAL = msgspec.msgpack.Decoder(RiskControl)


class SigningError(Exception):
    """A control cannot be signed: the key of the role is not configured."""


def _digest(key: bytes, control: RiskControl) -> str:
    body = encode(msgspec.structs.replace(control, sig=""))  # msgpack, defaults omitted: one byte string per message
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def role_key(settings: ControlSettings, role: str) -> bytes | None:
    secret = settings.risk_key if role == RISK else settings.operator_key
    value = secret.get_secret_value() if secret is not None else ""
    return value.encode() if value else None


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs controls as one role."""

    role: str
    key: bytes

    def __repr__(self) -> str:  # never the key
        return f"Signer({self.role!r})"

    @classmethod
    def of(cls, settings: ControlSettings, role: str) -> Signer:
        key = role_key(settings, role)
        if key is None:
            raise SigningError(
                f"no {role} key to sign risk:control with: set {ENV[role]} (environment) or"
                f" {role}_key in the secret file tradewind_control (TRADEWIND_SECRETS_DIR)"
            )
        return cls(role, key)

    def sign(self, control: RiskControl, now_ns: int | None = None) -> RiskControl:
        at = time.time_ns() if now_ns is None else now_ns
        canonical = _CANONICAL.decode(encode(control))  # as a consumer decodes it (an int limit becomes a float)
        unsigned = msgspec.structs.replace(canonical, signer=self.role, signed_at=at, sig="")
        return msgspec.structs.replace(unsigned, sig=_digest(self.key, unsigned))


def check(control: RiskControl, keys: dict[str, bytes]) -> str | None:
    """Why ``control`` is not a genuine control its signer may give; None when it is."""
    if not control.sig:
        return "unsigned"
    key = keys.get(control.signer)
    if key is None:
        return (
            f"signer {control.signer!r} has no key here"
            if control.signer in ROLES
            else f"unknown signer {control.signer!r}"
        )
    if not hmac.compare_digest(control.sig, _digest(key, control)):
        return f"bad signature (signer {control.signer})"
    if control.signer == OPERATOR:
        return None
    if control.action == "resume" and (control.force or control.cause in ("", "human")):
        return f"a {control.signer}-signed resume cannot lift human halts (operator key only)"
    return None


class ControlGate:
    """What a consumer of ``risk:control`` checks before its handler sees an entry.

    ``extra`` is the consumer's own rule on top (the executor's: a limit only the operator may raise).
    """

    def __init__(
        self,
        settings: ControlSettings,
        bus: Bus,
        service: str,
        *,
        heartbeat_timeout_s: float,
        extra: Callable[[RiskControl], str | None] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.keys = {r: k for r in ROLES if (k := role_key(settings, r)) is not None}
        self.max_age_ns = int(settings.max_age_s * 1e9)
        self.heartbeat_age_ns = int(min(settings.max_age_s, heartbeat_timeout_s) * 1e9)
        self.bus = bus
        self.service = service
        self.extra = extra
        self.clock = clock
        self._seen: OrderedDict[str, tuple[str, int]] = OrderedDict()  # sig -> (entry id, signed_at), fresh only
        self.refused = 0
        self.stale = 0
        if not self.keys:
            log.warning("%s: no control keys configured: every risk:control entry will be refused", service)

    async def verify(self, delivery: Delivery) -> str | None:
        """The ``Consumer`` hook: a reason to refuse the entry (and a RiskEvent saying so), else None."""
        now = self.clock()
        for m in delivery.messages:
            reason = self._refusal(m, delivery.entry_id, now)
            if reason:
                self.refused += 1
                control = m if isinstance(m, RiskControl) else None
                detail: dict[str, float | int | str | bool | None] = {
                    "stream": delivery.stream,
                    "entry": delivery.entry_id,
                    "reason": reason,
                    "action": control.action if control else type(m).__name__,
                    "issued_by": control.issued_by if control else "",
                    "signer": control.signer if control else "",
                    "refused_by": self.service,
                }
                log.error("%s refused %s entry %s: %s", self.service, delivery.stream, delivery.entry_id, reason)
                event = RiskEvent(
                    "control_refused", now, "critical", control.exchange if control else None, None, detail
                )
                await self.bus.publish(streams.RISK_EVENTS, [event])
                return reason
        return None

    def _refusal(self, m: object, entry_id: str, now: int) -> str | None:
        if not isinstance(m, RiskControl):
            return f"not a RiskControl: {type(m).__name__}"
        reason = check(m, self.keys)
        if reason:
            return reason
        if now - m.signed_at > self.max_age_ns:
            return None  # stale: ``fresh`` skips it
        first = self._seen.get(m.sig)
        if first is not None and first[0] != entry_id:
            return f"replay of entry {first[0]}"
        if first is None:
            self._seen[m.sig] = (entry_id, m.signed_at)
            while self._seen and now - next(iter(self._seen.values()))[1] > self.max_age_ns:
                self._seen.popitem(last=False)  # older than the window: refused as stale anyway
        return self.extra(m) if self.extra else None

    def fresh(self, messages: Iterable[object]) -> list[RiskControl]:
        """The verified controls of a batch that are not stale (signed within their window)."""
        now = self.clock()
        out = []
        for m in messages:
            if not isinstance(m, RiskControl):
                continue
            limit = self.heartbeat_age_ns if m.action == "heartbeat" else self.max_age_ns
            if abs(now - m.signed_at) > limit:
                self.stale += 1
                log.debug("%s skips a stale %s signed %.1fs ago", self.service, m.action, (now - m.signed_at) / 1e9)
                continue
            out.append(m)
        return out


def key_file(var_dir: Path) -> Path:
    return var_dir / "secrets" / KEY_FILE


def stack_keys(settings: ControlSettings, var_dir: Path) -> dict[str, str]:
    """`tradewind up`: the environment that hands the services both keys (the configured ones, else
    those generated once for this var dir, kept in ``<var_dir>/secrets/tradewind_control``, mode 0600)."""
    path = key_file(var_dir)
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    missing = [r for r in ROLES if role_key(settings, r) is None and not stored.get(f"{r}_key")]
    if missing:
        stored |= {f"{r}_key": secrets.token_hex(32) for r in missing}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(stored))
        path.chmod(0o600)  # an older file keeps its mode otherwise
    out = {}
    for r in ROLES:
        key = role_key(settings, r)
        out[ENV[r]] = key.decode() if key is not None else stored[f"{r}_key"]
    return out


def with_stack_keys(settings: ControlSettings, var_dir: Path) -> ControlSettings:
    """The keys configured, else those of the `tradewind up` that runs on ``var_dir`` (the CLI's case)."""
    path = key_file(var_dir)
    if all(role_key(settings, r) for r in ROLES) or not path.exists():
        return settings
    stored = json.loads(path.read_text())
    update = {
        f"{r}_key": SecretStr(stored[f"{r}_key"]) for r in ROLES if not role_key(settings, r) and stored.get(f"{r}_key")
    }
    return settings.model_copy(update=update)
