"""The message codec: round trips, batches, and clear errors on garbage."""

from __future__ import annotations

import contextlib

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
    Status,
    Trade,
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
