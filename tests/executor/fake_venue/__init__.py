"""A local fake of the Binance endpoints ccxt's ``binance`` class uses to trade (aiohttp, real sockets).

It checks the API key header and the HMAC-SHA256 signature the way Binance does, enforces the
request's ``recvWindow``, keeps spot, cross-margin, isolated-margin and futures wallets, fills market
orders against a fixed book, rests limit orders, pushes order updates on a private websocket (the
spot WebSocket API user-data stream) and injects faults on request: a timeout after the venue
accepted an order, 5xx, 429, an order visible only after some lookups, a dead websocket. Test hooks
play the rest of the world: ``fill_resting`` (someone trades against our resting order) and
``move_funds`` (money moved outside our orders).
"""

from tests.executor.fake_venue.core import FakeBinance, Fault

__all__ = ["FakeBinance", "Fault"]
