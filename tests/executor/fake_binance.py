"""The fake Binance venue; it lives in ``tests.executor.fake_venue`` (kept here for old imports)."""

from tests.executor.fake_venue import FakeBinance, Fault

__all__ = ["FakeBinance", "Fault"]
