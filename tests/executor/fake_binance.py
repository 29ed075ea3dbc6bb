"""A local fake of the Binance REST endpoints ccxt's `binance` class calls for trading (aiohttp).

It checks the API key header and the HMAC-SHA256 signature the way Binance does, keeps spot and
margin balances, fills market orders against a fixed book and rests limit orders.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web


class FakeBinance:
    def __init__(
        self, exchange_info: str, book: dict[str, dict[str, list[tuple[str, str]]]], key: str, secret: str
    ) -> None:
        self.exchange_info = exchange_info
        self.book = book  # symbol id -> {"bids": [(price, qty)], "asks": [...]}
        self.key, self.secret = key, secret
        self.balances: dict[str, dict[str, Decimal]] = {"spot": {}, "cross": {}}
        self.borrowed: dict[tuple[str, str], Decimal] = {}
        self.orders: dict[int, dict[str, Any]] = {}
        self.withdrawals: list[dict[str, str]] = []
        self.requests: list[str] = []
        self._ids = itertools.count(1000)

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/api/v3/exchangeInfo", self.exchange_info_handler)
        r.add_post("/api/v3/order", self.create_order)
        r.add_delete("/api/v3/order", self.cancel_order)
        r.add_get("/api/v3/order", self.get_order)
        r.add_get("/api/v3/openOrders", self.open_orders)
        r.add_get("/api/v3/account", self.account)
        r.add_post("/sapi/v1/margin/order", self.create_order)
        r.add_post("/sapi/v1/margin/borrow-repay", self.borrow_repay)
        r.add_post("/sapi/v1/capital/withdraw/apply", self.withdraw)
        return app

    async def exchange_info_handler(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        return web.Response(text=self.exchange_info, content_type="application/json")

    async def _signed(self, request: web.Request) -> dict[str, str]:
        self.requests.append(f"{request.method} {request.path}")
        raw = request.query_string if request.method in ("GET", "DELETE") else await request.text()
        payload, _, signature = raw.rpartition("&signature=")
        if request.headers.get("X-MBX-APIKEY") != self.key:
            raise web.HTTPUnauthorized(
                text='{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}',
                content_type="application/json",
            )
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise web.HTTPBadRequest(
                text='{"code":-1022,"msg":"Signature for this request is not valid."}', content_type="application/json"
            )
        return dict(parse_qsl(payload))

    def _wallet(self, params: dict[str, str], path: str) -> str:
        if "margin" not in path:
            return "spot"
        return f"isolated:{params['symbol']}" if params.get("isIsolated") == "TRUE" else "cross"

    def _bal(self, wallet: str) -> dict[str, Decimal]:
        return self.balances.setdefault(wallet, {})

    def _order_json(self, o: dict[str, Any], fills: list[dict[str, str]] | None = None) -> dict[str, Any]:
        out = {k: v for k, v in o.items() if not k.startswith("_")}
        if fills is not None:
            out["fills"] = fills
        return out

    async def create_order(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        wallet = self._wallet(p, request.path)
        symbol, side, kind = p["symbol"], p["side"], p["type"]
        base, quote = symbol[:-4], symbol[-4:]  # USDT markets only in this fake
        qty = Decimal(p["quantity"])
        if any(o["clientOrderId"] == p.get("newClientOrderId") for o in self.orders.values()):
            return web.json_response({"code": -2010, "msg": "Duplicate order sent."}, status=400)
        bal = self._bal(wallet)
        levels = self.book[symbol]["asks" if side == "BUY" else "bids"]
        limit = Decimal(p["price"]) if "price" in p else None
        fills, left = [], qty
        for price_s, amount_s in levels:
            price = Decimal(price_s)
            if left <= 0 or (limit is not None and (price > limit if side == "BUY" else price < limit)):
                break
            take = min(left, Decimal(amount_s))
            fills.append((price, take))
            left -= take
        if kind == "LIMIT_MAKER" and fills:
            return web.json_response({"code": -2010, "msg": "Order would immediately match and take."}, status=400)
        cost = sum((pr * q for pr, q in fills), Decimal(0))
        need_asset, need = (
            (quote, cost if kind == "MARKET" else cost + left * (limit or 0)) if side == "BUY" else (base, qty)
        )
        if bal.get(need_asset, Decimal(0)) < need:
            return web.json_response(
                {"code": -2010, "msg": "Account has insufficient balance for requested action."}, status=400
            )
        filled = qty - left
        sign = 1 if side == "BUY" else -1
        bal[base] = bal.get(base, Decimal(0)) + sign * filled
        bal[quote] = bal.get(quote, Decimal(0)) - sign * cost
        oid = next(self._ids)
        status = (
            "FILLED"
            if left == 0
            else (
                "EXPIRED"
                if kind == "MARKET" or p.get("timeInForce") == "IOC"
                else ("PARTIALLY_FILLED" if filled else "NEW")
            )
        )
        order = {
            "symbol": symbol,
            "orderId": oid,
            "clientOrderId": p.get("newClientOrderId", f"x{oid}"),
            "transactTime": int(p["timestamp"]),
            "price": p.get("price", "0"),
            "origQty": p["quantity"],
            "executedQty": str(filled),
            "cummulativeQuoteQty": str(cost),
            "status": status,
            "timeInForce": p.get("timeInForce", "GTC"),
            "type": kind,
            "side": side,
            "_wallet": wallet,
            "time": int(p["timestamp"]),
            "updateTime": int(p["timestamp"]),
        }
        self.orders[oid] = order
        fill_json = [
            {"price": str(pr), "qty": str(q), "commission": "0", "commissionAsset": base, "tradeId": i}
            for i, (pr, q) in enumerate(fills)
        ]
        return web.json_response(self._order_json(order, fill_json))

    def _find(self, p: dict[str, str]) -> dict[str, Any] | None:
        if "orderId" in p:
            return self.orders.get(int(p["orderId"]))
        cid = p.get("origClientOrderId")
        return next((o for o in self.orders.values() if o["clientOrderId"] == cid), None)

    async def cancel_order(self, request: web.Request) -> web.Response:
        order = self._find(await self._signed(request))
        if order is None or order["status"] not in ("NEW", "PARTIALLY_FILLED"):
            return web.json_response({"code": -2011, "msg": "Unknown order sent."}, status=400)
        order["status"] = "CANCELED"
        return web.json_response(self._order_json(order))

    async def get_order(self, request: web.Request) -> web.Response:
        order = self._find(await self._signed(request))
        if order is None:
            return web.json_response({"code": -2013, "msg": "Order does not exist."}, status=400)
        return web.json_response(self._order_json(order))

    async def open_orders(self, request: web.Request) -> web.Response:
        await self._signed(request)
        return web.json_response(
            [self._order_json(o) for o in self.orders.values() if o["status"] in ("NEW", "PARTIALLY_FILLED")]
        )

    async def account(self, request: web.Request) -> web.Response:
        await self._signed(request)
        return web.json_response(
            {
                "makerCommission": 10,
                "takerCommission": 10,
                "canTrade": True,
                "accountType": "SPOT",
                "balances": [{"asset": a, "free": str(v), "locked": "0"} for a, v in self._bal("spot").items()],
            }
        )

    async def borrow_repay(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        wallet = self._wallet(p, request.path)
        amount = Decimal(p["amount"])
        key = (wallet, p["asset"])
        bal = self._bal(wallet)
        sign = 1 if p["type"] == "BORROW" else -1
        self.borrowed[key] = self.borrowed.get(key, Decimal(0)) + sign * amount
        bal[p["asset"]] = bal.get(p["asset"], Decimal(0)) + sign * amount
        return web.json_response({"tranId": next(self._ids), "clientTag": ""})

    async def withdraw(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        self.withdrawals.append(p)
        return web.json_response({"id": f"w{next(self._ids)}"})
