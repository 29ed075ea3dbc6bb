"""Orders, authentication and fault injection of the fake Binance venue (spot and margin order endpoints)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.executor.fake_venue import accounts, userstream

INTERNAL_ERROR = {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}


@dataclass
class Fault:
    """What goes wrong with the next order request.

    ``accept``: the venue places the order before failing. ``hang``: the response never comes (the
    client's own timeout fires). ``status``: an HTTP error status instead of the answer (5xx, 429).
    ``hidden_lookups``: that many lookups answer "order does not exist" before it becomes visible.
    ``fill_before_answer``: someone trades against the new resting order before its answer leaves (which
    still says NEW): the fill's report on the private websocket beats the answer, as it can on Binance.
    """

    accept: bool = True
    hang: bool = False
    status: int | None = None
    hidden_lookups: int = 0
    fill_before_answer: bool = False


class FakeBinance:
    """``unique_client_ids``: ``"all"`` refuses a client order id used by any earlier order; ``"open"``
    only one used by an order still open, as Binance does (a resent id of a filled order trades again)."""

    def __init__(
        self,
        exchange_info: str,
        book: dict[str, dict[str, list[tuple[str, str]]]],
        key: str,
        secret: str,
        unique_client_ids: str = "all",
    ) -> None:
        self.exchange_info = exchange_info
        self.book = book  # symbol id -> {"bids": [(price, qty)], "asks": [...]}
        self.key, self.secret = key, secret
        self.balances: dict[str, dict[str, Decimal]] = {"spot": {}, "cross": {}, "futures": {}}
        self.borrowed: dict[tuple[str, str], Decimal] = {}  # (wallet, asset) -> loan outstanding
        self.positions: dict[str, dict[str, str]] = {}  # futures symbol id -> {"positionAmt", "entryPrice", ...}
        self.orders: dict[int, dict[str, Any]] = {}  # every order the venue accepted, with its _accepted_ns
        self.unique_client_ids = unique_client_ids
        self.withdrawals: list[dict[str, str]] = []
        self.requests: list[str] = []
        self.faults: list[Fault] = []  # applied to the next order requests, in order
        self.ws = userstream.UserStream(self)
        self.released = asyncio.Event()  # hung requests return when set (at shutdown)
        self._ids = itertools.count(1000)

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/api/v3/exchangeInfo", self.exchange_info_handler)
        for prefix in ("/api/v3", "/sapi/v1/margin"):
            r.add_post(f"{prefix}/order", self.create_order)
            r.add_delete(f"{prefix}/order", self.cancel_order)
            r.add_get(f"{prefix}/order", self.get_order)
            r.add_get(f"{prefix}/openOrders", self.open_orders)
        r.add_post("/sapi/v1/margin/borrow-repay", self.borrow_repay)
        r.add_post("/sapi/v1/capital/withdraw/apply", self.withdraw)
        r.add_post("/sapi/v1/asset/transfer", self.transfer)
        accounts.add_routes(self, r)
        r.add_get("/ws-api/v3", self.ws.handler)
        return app

    async def close(self) -> None:
        self.released.set()
        await self.ws.close()

    def next_id(self) -> int:
        return next(self._ids)

    async def exchange_info_handler(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        return web.Response(text=self.exchange_info, content_type="application/json")

    def verify(self, raw: str, api_key: str | None) -> dict[str, str]:
        """The request's parameters when its key, signature and receive window check out."""
        payload, _, signature = raw.rpartition("&signature=")
        if api_key != self.key:
            raise web.HTTPUnauthorized(
                text='{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}',
                content_type="application/json",
            )
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise web.HTTPBadRequest(
                text='{"code":-1022,"msg":"Signature for this request is not valid."}', content_type="application/json"
            )
        p = dict(parse_qsl(payload))
        if int(p["timestamp"]) + int(p.get("recvWindow", 5000)) < time.time() * 1000:
            raise web.HTTPBadRequest(
                text='{"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}',
                content_type="application/json",
            )
        return p

    async def signed(self, request: web.Request) -> dict[str, str]:
        self.requests.append(f"{request.method} {request.path}")
        raw = request.query_string if request.method in ("GET", "DELETE") else await request.text()
        return self.verify(raw, request.headers.get("X-MBX-APIKEY"))

    def wallet(self, params: dict[str, str], path: str) -> str:
        if "margin" not in path:
            return "spot"
        return f"isolated:{params['symbol']}" if str(params.get("isIsolated", "")).upper() == "TRUE" else "cross"

    def bal(self, wallet: str) -> dict[str, Decimal]:
        return self.balances.setdefault(wallet, {})

    def order_json(self, o: dict[str, Any], fills: list[dict[str, str]] | None = None) -> dict[str, Any]:
        out = {k: v for k, v in o.items() if not k.startswith("_")}
        if fills is not None:
            out["fills"] = fills
        return out

    def orders_by_client_id(self, cid: str | None) -> list[dict[str, Any]]:
        return [o for o in self.orders.values() if o["clientOrderId"] == cid]

    async def create_order(self, request: web.Request) -> web.Response:
        p = await self.signed(request)
        fault = self.faults.pop(0) if self.faults else None
        if fault is not None and not fault.accept:
            body = {"code": -1003, "msg": "Too many requests."} if fault.status == 429 else INTERNAL_ERROR
            return web.json_response(body, status=fault.status or 503)
        response = await self._place(p, request.path)
        if fault is not None:
            if fault.hidden_lookups and self.orders_by_client_id(p.get("newClientOrderId")):
                self.orders_by_client_id(p.get("newClientOrderId"))[0]["_hidden"] = fault.hidden_lookups
            if fault.fill_before_answer:
                await self.fill_resting(p["newClientOrderId"])
            if fault.hang:
                await self.released.wait()
            if fault.status:
                return web.json_response(INTERNAL_ERROR, status=fault.status)
        return response

    async def _place(self, p: dict[str, str], path: str) -> web.Response:
        wallet = self.wallet(p, path)
        symbol, side, kind = p["symbol"], p["side"], p["type"]
        base, quote = symbol[:-4], symbol[-4:]  # USDT markets only in this fake
        qty = Decimal(p["quantity"])
        same = self.orders_by_client_id(p.get("newClientOrderId"))
        if self.unique_client_ids == "open":
            same = [o for o in same if o["status"] in ("NEW", "PARTIALLY_FILLED")]
        if same:
            return web.json_response({"code": -2010, "msg": "Duplicate order sent."}, status=400)
        bal = self.bal(wallet)
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
        ioc = kind == "MARKET" or p.get("timeInForce") == "IOC"
        if ioc:
            qty = qty - left  # what does not fill now expires
        cost = sum((pr * q for pr, q in fills), Decimal(0))
        rest = Decimal(0) if ioc else left * (limit or 0)
        need_asset, need = (quote, cost + rest) if side == "BUY" else (base, qty)
        if bal.get(need_asset, Decimal(0)) < need:
            return web.json_response(
                {"code": -2010, "msg": "Account has insufficient balance for requested action."}, status=400
            )
        filled = qty - (Decimal(0) if ioc else left)
        sign = 1 if side == "BUY" else -1
        bal[base] = bal.get(base, Decimal(0)) + sign * filled
        bal[quote] = bal.get(quote, Decimal(0)) - sign * cost
        if p.get("sideEffectType") == "AUTO_REPAY":
            accounts.auto_repay(self, wallet, base if side == "BUY" else quote)
        oid = self.next_id()
        left_open = Decimal(0) if ioc else left
        status = "FILLED" if left == 0 else ("EXPIRED" if ioc else ("PARTIALLY_FILLED" if filled else "NEW"))
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
            "_left": str(left_open),
            "_accepted_ns": time.time_ns(),  # the venue's own clock: when the order went live
            "time": int(p["timestamp"]),
            "updateTime": int(p["timestamp"]),
        }
        self.orders[oid] = order
        fill_json = [
            {"price": str(pr), "qty": str(q), "commission": "0", "commissionAsset": base, "tradeId": self.next_id()}
            for pr, q in fills
        ]
        order["_fills"] = list(fill_json)
        await self.ws.order_update(order, fill_json)
        return web.json_response(self.order_json(order, fill_json))

    def find(self, p: dict[str, str], path: str, count_lookup: bool = False) -> dict[str, Any] | None:
        """The order these parameters name, among the orders of the wallet the endpoint serves (Binance's spot
        endpoints know no margin order, its margin endpoints no spot one)."""
        if "orderId" in p:
            order = self.orders.get(int(p["orderId"]))
        else:
            order = next(iter(self.orders_by_client_id(p.get("origClientOrderId"))), None)
        if order is not None and order["_wallet"] != self.wallet(p, path):
            return None
        if order is not None and order.get("_hidden", 0) > 0:
            if count_lookup:
                order["_hidden"] -= 1
            return None
        return order

    async def cancel_order(self, request: web.Request) -> web.Response:
        order = self.find(await self.signed(request), request.path)
        if order is None or order["status"] not in ("NEW", "PARTIALLY_FILLED"):
            return web.json_response({"code": -2011, "msg": "Unknown order sent."}, status=400)
        order["status"] = "CANCELED"
        await self.ws.order_update(order, [])
        return web.json_response(self.order_json(order))

    async def get_order(self, request: web.Request) -> web.Response:
        order = self.find(await self.signed(request), request.path, count_lookup=True)
        if order is None:
            return web.json_response({"code": -2013, "msg": "Order does not exist."}, status=400)
        return web.json_response(self.order_json(order))

    async def open_orders(self, request: web.Request) -> web.Response:
        p = await self.signed(request)
        wallet = self.wallet(p, request.path)
        return web.json_response(
            [
                self.order_json(o)
                for o in self.orders.values()
                if o["status"] in ("NEW", "PARTIALLY_FILLED") and o["_wallet"] == wallet and not o.get("_hidden")
            ]
        )

    async def borrow_repay(self, request: web.Request) -> web.Response:
        p = await self.signed(request)
        wallet = self.wallet(p, request.path)
        amount = Decimal(p["amount"])
        key = (wallet, p["asset"])
        bal = self.bal(wallet)
        sign = 1 if p["type"] == "BORROW" else -1
        self.borrowed[key] = self.borrowed.get(key, Decimal(0)) + sign * amount
        bal[p["asset"]] = bal.get(p["asset"], Decimal(0)) + sign * amount
        return web.json_response({"tranId": self.next_id(), "clientTag": ""})

    async def fill_resting(self, client_order_id: str) -> None:
        """Someone trades against our resting limit order: fill all of it at its price (test hook).

        The fill is pushed on the private websocket, as the venue would; it only shows over REST otherwise.
        """
        order = self.orders_by_client_id(client_order_id)[0]
        assert order["status"] == "NEW" and not Decimal(order["executedQty"]), "fills untouched resting orders only"
        qty, price = Decimal(order["_left"]), Decimal(order["price"])
        symbol, bal = order["symbol"], self.bal(order["_wallet"])
        base, quote = symbol[:-4], symbol[-4:]
        sign = 1 if order["side"] == "BUY" else -1
        bal[base] = bal.get(base, Decimal(0)) + sign * qty
        bal[quote] = bal.get(quote, Decimal(0)) - sign * qty * price
        now = int(time.time() * 1000)
        order.update(
            executedQty=str(qty), cummulativeQuoteQty=str(qty * price), status="FILLED", _left="0", updateTime=now
        )
        fill = {"price": str(price), "qty": str(qty), "commission": "0", "commissionAsset": base}
        traded = {**fill, "tradeId": self.next_id()}
        order.setdefault("_fills", []).append(traded)
        await self.ws.order_update(order, [traded])

    def move_funds(self, wallet: str, asset: str, delta: Decimal) -> None:
        """Money moves outside our orders (a deposit, a withdrawal from the venue's website): test hook."""
        bal = self.bal(wallet)
        bal[asset] = bal.get(asset, Decimal(0)) + delta

    async def transfer(self, request: web.Request) -> web.Response:
        """Universal transfer between our own wallets; MAIN_MARGIN (spot -> cross) and back, as Binance names them."""
        p = await self.signed(request)
        wallets = {"MAIN_MARGIN": ("spot", "cross"), "MARGIN_MAIN": ("cross", "spot")}
        if p.get("type") not in wallets:
            return web.json_response({"code": -1100, "msg": f"unsupported transfer type {p.get('type')}"}, status=400)
        source, target = wallets[p["type"]]
        amount, asset = Decimal(p["amount"]), p["asset"]
        if self.bal(source).get(asset, Decimal(0)) < amount:
            return web.json_response({"code": -5013, "msg": "Asset transfer failed: insufficient balance"}, status=400)
        self.move_funds(source, asset, -amount)
        self.move_funds(target, asset, amount)
        return web.json_response({"tranId": self.next_id()})

    async def withdraw(self, request: web.Request) -> web.Response:
        p = await self.signed(request)
        self.withdrawals.append(p)
        return web.json_response({"id": f"w{self.next_id()}"})
