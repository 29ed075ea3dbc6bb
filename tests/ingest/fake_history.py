"""A local fake of Binance's public history endpoints (``/api/v3/klines``, ``/api/v3/aggTrades``) for
`tradewind download` tests, served over real sockets so ccxt speaks its own REST to it.

Data is made up in the test (labelled synthetic there); the fake pages it the way Binance does:
``startTime``/``endTime`` inclusive, at most ``max_page`` rows per answer, the rows after a hole in
the data simply missing. ``throttle`` answers that many next requests with HTTP 429 and Binance's
``-1003`` body, as the venue does when a client exceeds its request weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

KLINE_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}


@dataclass
class FakeHistory:
    exchange_info: str
    bars: dict[str, list[list[Any]]] = field(default_factory=dict)  # symbol id -> klines rows (Binance layout)
    trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # symbol id -> aggTrades rows
    max_page: int = 1000
    throttle: int = 0  # the next N history requests answer 429
    requests: list[dict[str, str]] = field(default_factory=list)  # every history request's query

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v3/exchangeInfo", self._info)
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_get("/api/v3/aggTrades", self._agg_trades)
        return app

    async def _info(self, request: web.Request) -> web.Response:
        return web.Response(text=self.exchange_info, content_type="application/json")

    def _throttled(self, request: web.Request) -> web.Response | None:
        self.requests.append({"path": request.path, **request.query})
        if self.throttle <= 0:
            return None
        self.throttle -= 1
        body = {
            "code": -1003,
            "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE.",
        }
        return web.json_response(body, status=429, headers={"Retry-After": "0"})

    def _window(self, request: web.Request, rows: list[Any], ts: Any) -> list[Any]:
        q = request.query
        start = int(q.get("startTime", 0))
        end = int(q.get("endTime", 2**62))
        limit = min(int(q.get("limit", 500)), self.max_page)
        return [r for r in rows if start <= ts(r) <= end][:limit]

    async def _klines(self, request: web.Request) -> web.Response:
        if (refused := self._throttled(request)) is not None:
            return refused
        symbol = request.query["symbol"]
        if symbol not in self.bars:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        return web.json_response(self._window(request, self.bars[symbol], lambda r: r[0]))

    async def _agg_trades(self, request: web.Request) -> web.Response:
        if (refused := self._throttled(request)) is not None:
            return refused
        rows = self.trades.get(request.query["symbol"], [])
        if "fromId" in request.query:
            first = int(request.query["fromId"])
            limit = min(int(request.query.get("limit", 500)), self.max_page)
            return web.json_response([r for r in rows if r["a"] >= first][:limit])
        return web.json_response(self._window(request, rows, lambda r: r["T"]))


def kline(open_ms: int, interval_ms: int, o: float, h: float, lo: float, c: float, v: float) -> list[Any]:
    """One row as Binance's klines endpoint sends it."""
    return [open_ms, f"{o}", f"{h}", f"{lo}", f"{c}", f"{v}", open_ms + interval_ms - 1, "0", 1, "0", "0", "0"]


def agg_trade(trade_id: int, ts_ms: int, price: float, qty: float, buyer_maker: bool) -> dict[str, Any]:
    """One row as Binance's aggTrades endpoint sends it."""
    return {"a": trade_id, "p": f"{price}", "q": f"{qty}", "f": trade_id, "l": trade_id, "T": ts_ms,
            "m": buyer_maker, "M": True}  # fmt: skip
