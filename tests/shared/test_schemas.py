"""The message codec: round trips, batches, and clear errors on garbage."""

from __future__ import annotations

import ast
import contextlib
from pathlib import Path
from typing import get_args

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.schemas import (
    BookUpdate,
    DecodeError,
    Fill,
    OrderEvent,
    OrderIntent,
    PolicyUpdate,
    RiskControl,
    RiskEvent,
    RiskEventKind,
    Status,
    Trade,
    WalletTransfer,
    decode,
    encode,
    to_json,
)

EXAMPLES = [
    Trade("binance", "BTC/USDT", "42", 65000.5, 0.25, "sell", 1, 2),
    BookUpdate("kraken", "ETH/USD", 7, 1, 2, [(3000.0, 1.5)], [(3001.0, 0.0)], snapshot=True),
    Status("okx", "gap", 5, symbol="BTC/USDT", detail="seq 9 after 7"),
    OrderIntent("cid-1", "binance", "BTC/USDT", "buy", "limit", 0.1, 3, price=64000.0, margin_mode="isolated"),
    OrderEvent(
        "cid-1",
        "binance",
        "BTC/USDT",
        "buy",
        "filled",
        4,
        filled=0.1,
        fills=[Fill("f1", 64000.0, 0.1, 0.0001, "BTC", 4)],
    ),
    RiskEvent("crash_start", 9, "critical", exchange="kraken", detail={"drop": -0.3}),
    RiskControl("halt", 10, reason="operator"),
    PolicyUpdate("p1", "ppo", "file:///ckpt", 11, metrics={"sharpe": 1.2}),
    WalletTransfer("tu-1", "binance", "USDT", 150.0, "spot", "cross", 12, status="done", venue_transfer_id="M1"),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_alone_and_in_a_batch(message):
    assert decode(encode(message)) == [message]
    assert decode(encode([message, message])) == [message, message]
    assert msgspec.json.decode(to_json(message))["type"] == message.__struct_config__.tag


def test_messages_are_frozen():
    with pytest.raises(AttributeError):
        EXAMPLES[0].price = 1.0  # type: ignore[misc]


def test_wrong_types_are_rejected_with_the_field_named():
    bad = msgspec.msgpack.encode({"type": "trade", "exchange": "x", "symbol": "A/B", "trade_id": "1",
                                  "price": "cheap", "amount": 1.0, "side": "buy", "ts": 1, "recv_ts": 1})  # fmt: skip
    with pytest.raises(DecodeError, match="price"):
        decode(bad)
    with pytest.raises(DecodeError, match="side"):
        decode(msgspec.msgpack.encode({**msgspec.to_builtins(EXAMPLES[0]), "side": "up"}))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_decode_error(data):
    with contextlib.suppress(DecodeError):
        decode(data)


def _risk_event_kinds_in_source() -> dict[str, str]:
    """Every kind given as a string literal to ``RiskEvent(...)`` (or as the hedger's crash kinds) in
    shared/ and services/: kind -> where."""
    root = Path(__file__).parents[2]
    found: dict[str, str] = {}
    for path in sorted([*root.joinpath("shared").rglob("*.py"), *root.joinpath("services").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "RiskEvent"):
                continue
            args = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "kind")]
            if args and isinstance(args[0], ast.Constant):
                found[args[0].value] = f"{path.relative_to(root)}:{node.lineno}"
    return found


def test_every_risk_event_kind_built_is_a_documented_kind():
    kinds = set(get_args(RiskEventKind))
    found = _risk_event_kinds_in_source()
    assert {"halt", "margin_low", "hedge_open", "reconcile_mismatch"} <= set(found)  # the reader sees them
    assert {k: where for k, where in found.items() if k not in kinds} == {}
    # built from other values: the crash detector's states (services/risk/hedge.py) and the paper
    # venue's notices (shared.paper Notice.kind), forwarded by the executor
    assert {"crash_start", "crash_recovery", "crash_end", "margin_call", "liquidation"} <= kinds


def test_a_risk_event_of_an_unknown_kind_still_decodes():
    """An entry from another version of the code, with a kind this one does not know, is still read."""
    (event,) = decode(encode([RiskEvent("limit_breach", 1)]))
    assert isinstance(event, RiskEvent) and event.kind == "limit_breach"
