"""Fixtures of the arbitrage tests."""

from __future__ import annotations

import pytest

from services.executor.arbitrage.markets import Market, load_markets

from .snapshots import BINANCE_MARKETS


@pytest.fixture(scope="session")
def binance_markets() -> list[Market]:
    return load_markets(BINANCE_MARKETS, default_taker_fee=0.001)
