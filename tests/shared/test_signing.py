"""The signed control plane (shared.signing): who may steer risk:control, and what the guard lets risk do."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import SecretStr

from shared.bus import Delivery
from shared.config import Settings
from shared.pretrade import PreTradeGuard
from shared.schemas import AnyMessage, RiskControl, RiskEvent, streams
from shared.sections.control import ControlSettings
from shared.sections.risk import RiskSettings
from shared.signing import ENV, OPERATOR, RISK, ControlGate, Signer, SigningError, check, stack_keys, with_stack_keys
from tests.control import KEYS, SIGNERS, signed

NS = 1_000_000_000
KEY_BYTES = {RISK: b"test-risk-key", OPERATOR: b"test-operator-key"}


def halt(**kw: Any) -> RiskControl:
    return RiskControl("halt", 5, reason="drill", issued_by="cli:ops@host", cause="human", **kw)


def test_a_signature_covers_the_whole_message_and_names_its_signer() -> None:
    good = signed(halt())
    assert good.signer == OPERATOR and good.signed_at > 0 and check(good, KEY_BYTES) is None
    assert check(halt(), KEY_BYTES) == "unsigned"
    for forged in (
        msgspec.structs.replace(good, ts=6),  # the domain time is signed too
        msgspec.structs.replace(good, exchange="binance"),
        msgspec.structs.replace(good, signed_at=good.signed_at + 1),
        Signer(OPERATOR, b"a guess").sign(halt()),
    ):
        assert check(forged, KEY_BYTES) == "bad signature (signer operator)"
    assert check(msgspec.structs.replace(good, signer="root"), KEY_BYTES) == "unknown signer 'root'"
    assert "has no key here" in (check(good, {RISK: KEY_BYTES[RISK]}) or "")


def test_only_the_operator_lifts_human_halts() -> None:
    human_resume = RiskControl("resume", 5, issued_by="cli:ops@host", cause="human")
    assert check(signed(human_resume, OPERATOR), KEY_BYTES) is None
    assert "operator key only" in (check(signed(human_resume, RISK), KEY_BYTES) or "")
    forced = RiskControl("resume", 5, issued_by="risk", cause="drawdown", force=True)
    assert "operator key only" in (check(signed(forced, RISK), KEY_BYTES) or "")
    own = RiskControl("resume", 5, exchange="kraken", issued_by="risk", cause="feed")  # its own feed halt
    assert check(signed(own, RISK), KEY_BYTES) is None
    assert check(signed(halt(), RISK), KEY_BYTES) is None  # anyone with a key may halt


def test_risk_may_only_tighten_limits_and_the_operator_may_loosen_them() -> None:
    risk = RiskSettings(symbols={"binance:ETH/USDT": {"max_order_notional": 5_000.0}})  # type: ignore[dict-item]
    guard = PreTradeGuard(risk)

    def set_limit(role: str, value: float, exchange: str | None = "binance", name: str = "max_order_notional") -> None:
        guard.on_control(signed(RiskControl("set_limit", 1, exchange=exchange, limits={name: value}), role), 1)

    def limit(symbol: str = "BTC/USDT", name: str = "max_order_notional") -> float:
        return float(getattr(guard.limits("binance", symbol), name))

    raise_ = signed(RiskControl("set_limit", 1, exchange="binance", limits={"max_order_notional": 1e15}), RISK)
    assert "would loosen max_order_notional" in (guard.refusal(raise_) or "")
    set_limit(RISK, 1e15)
    assert limit() == 25_000.0  # refused: unchanged
    # 10,000 is under the venue's 25,000 but over ETH's 5,000 there: it would loosen ETH, so refused
    set_limit(RISK, 10_000.0)
    assert limit() == 25_000.0 and limit("ETH/USDT") == 5_000.0
    set_limit(RISK, 4_000.0)
    assert limit() == 4_000.0 and limit("ETH/USDT") == 4_000.0
    set_limit(RISK, 20_000.0, exchange=None)  # every venue: binance keeps its own runtime value
    assert limit() == 4_000.0 and guard.limits("kraken", "BTC/USDT").max_order_notional == 20_000.0
    set_limit(OPERATOR, 30_000.0)
    assert limit() == 30_000.0  # the operator may loosen
    set_limit(RISK, 0.001, name="fee_buffer")  # a smaller fee buffer is looser
    assert limit(name="fee_buffer") == 0.002
    set_limit(RISK, 0.01, name="fee_buffer")
    assert limit(name="fee_buffer") == 0.01
    crash = signed(RiskControl("set_limit", 1, exchange="binance", limits={"block_buys": 0.0}), RISK)
    assert guard.refusal(crash) is None  # lifting its own crash buy-block is not a limit


class Published:
    def __init__(self) -> None:
        self.events: list[RiskEvent] = []

    async def publish(self, stream: str, payload: Any) -> str:
        assert stream == streams.RISK_EVENTS
        self.events += payload
        return "1-0"

    async def publish_many(self, entries: Any) -> list[str]:
        raise AssertionError("not used")


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


async def test_the_gate_refuses_forgeries_and_replays_and_skips_stale_controls() -> None:
    bus, clock = Published(), Clock(0)
    gate = ControlGate(KEYS, bus, "executor", heartbeat_timeout_s=5.0, clock=clock)

    def delivery(entry: str, *messages: AnyMessage) -> Delivery:
        return Delivery(streams.RISK_CONTROL, entry, list(messages))

    control = SIGNERS[OPERATOR].sign(halt(), now_ns=100 * NS)
    clock.now = 101 * NS
    assert await gate.verify(delivery("1-0", control)) is None
    assert await gate.verify(delivery("1-0", control)) is None  # the same entry again: a redelivery
    assert await gate.verify(delivery("2-0", control)) == "replay of entry 1-0"
    assert await gate.verify(delivery("3-0", halt())) == "unsigned"
    assert [(e.kind, e.detail["entry"], e.detail["reason"]) for e in bus.events] == [
        ("control_refused", "2-0", "replay of entry 1-0"),
        ("control_refused", "3-0", "unsigned"),
    ]
    assert gate.fresh([control]) == [control]
    clock.now = 100 * NS + 61 * NS  # past control.max_age_s: stale, skipped (the durable set has the halts)
    assert gate.fresh([control]) == []
    assert await gate.verify(delivery("4-0", control)) is None  # a stale copy: not applied, not an alarm


def test_a_heartbeat_counts_only_within_the_heartbeat_timeout() -> None:
    clock = Clock(100 * NS)
    gate = ControlGate(KEYS, Published(), "risk", heartbeat_timeout_s=5.0, clock=clock)
    heartbeat = SIGNERS[RISK].sign(RiskControl("heartbeat", 1, issued_by="risk"), now_ns=94 * NS)
    late_halt = SIGNERS[RISK].sign(RiskControl("halt", 1, issued_by="risk", cause="feed"), now_ns=94 * NS)
    assert gate.fresh([heartbeat, late_halt]) == [late_halt]


def test_tradewind_up_generates_private_keys_per_var_dir_and_the_cli_finds_them(tmp_path: Path) -> None:
    env = stack_keys(ControlSettings(), tmp_path)
    path = tmp_path / "secrets" / "tradewind_control"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert set(env) == {ENV[RISK], ENV[OPERATOR]} and env[ENV[RISK]] != env[ENV[OPERATOR]]
    assert stack_keys(ControlSettings(), tmp_path) == env  # generated once
    configured = ControlSettings(risk_key=SecretStr("from-secrets"))
    assert stack_keys(configured, tmp_path)[ENV[RISK]] == "from-secrets"  # configured keys win
    cli = with_stack_keys(ControlSettings(), tmp_path)
    assert Signer.of(cli, OPERATOR).key == env[ENV[OPERATOR]].encode()
    assert json.loads(path.read_text())["operator_key"] == env[ENV[OPERATOR]]
    with pytest.raises(SigningError, match="TRADEWIND_CONTROL__OPERATOR_KEY"):
        Signer.of(with_stack_keys(ControlSettings(), tmp_path / "other"), OPERATOR)


def test_config_masks_the_keys() -> None:
    shown = json.dumps(Settings(control=KEYS).redacted())
    assert "test-risk-key" not in shown and "test-operator-key" not in shown
    assert "test-risk-key" not in repr(SIGNERS[RISK])


def test_a_signature_survives_the_wire_whatever_the_sender_typed() -> None:
    from shared.schemas import decode, encode

    control = signed(RiskControl("set_limit", 1, limits={"max_order_notional": 100}))  # an int where floats go
    (received,) = decode(encode(control))
    assert isinstance(received, RiskControl) and check(received, KEY_BYTES) is None
