"""The fake venue's private websocket: Binance's spot WebSocket API user-data stream.

ccxt pro's ``watch_orders`` / ``watch_my_trades`` send ``userDataStream.subscribe.signature``;
after a signed subscription every order change is pushed as an ``executionReport`` event, e.g.
``{"subscriptionId": 0, "event": {"e": "executionReport", "s": "BTCUSDT", "c": "c1", "X": "FILLED", ...}}``.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from tests.executor.fake_venue.core import FakeBinance


class UserStream:
    def __init__(self, fake: FakeBinance) -> None:
        self.fake = fake
        self.sockets: list[web.WebSocketResponse] = []
        self.up = True  # False: refuse connections and drop the open ones (a dead websocket)
        self.subscribed = 0  # signed subscriptions accepted so far
        self.pushed = 0  # executionReports sent so far
        self.duplicate = 0  # fault: the next this many reports are sent twice
        self.hold = 0  # fault: the next this many reports are held back and sent after the one that follows
        self.drop = 0  # fault: the next this many reports are never sent (as while a subscription is being made)
        self._held: list[dict[str, Any]] = []

    async def handler(self, request: web.Request) -> web.StreamResponse:
        if not self.up:
            raise web.HTTPServiceUnavailable()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            req = json.loads(msg.data)
            if req.get("method") != "userDataStream.subscribe.signature":
                await ws.send_json({"id": req.get("id"), "status": 400, "error": {"code": -1100, "msg": "unknown"}})
                continue
            params = dict(req["params"])
            signature = params.pop("signature")
            payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))  # ccxt signs keysorted, apiKey too
            try:
                self.fake.verify(f"{payload}&signature={signature}", params.get("apiKey"))
            except web.HTTPException as exc:
                await ws.send_json({"id": req["id"], "status": exc.status, "error": json.loads(exc.text or "{}")})
                continue
            self.sockets.append(ws)
            self.subscribed += 1
            await ws.send_json({"id": req["id"], "status": 200, "result": {"subscriptionId": 0}})
        if ws in self.sockets:
            self.sockets.remove(ws)
        return ws

    async def go_down(self) -> None:
        self.up = False
        await self.close()

    def come_back(self) -> None:
        self.up = True

    async def close(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        self.sockets.clear()

    async def order_update(self, order: dict[str, Any], fills: list[dict[str, str]]) -> None:
        """Push the order's state: one TRADE report per fill, or one report of its status."""
        if order["_wallet"] != "spot" or not self.sockets:
            return  # the spot stream carries spot orders only
        now = int(time.time() * 1000)
        reports = []
        cum = cum_quote = 0.0
        for f in fills:
            cum += float(f["qty"])
            cum_quote += float(f["qty"]) * float(f["price"])
            last = abs(cum - float(order["executedQty"])) < 1e-12
            status = order["status"] if last else "PARTIALLY_FILLED"
            reports.append(self._report(order, "TRADE", status, now, f, cum, cum_quote))
        if not fills:
            kind = "CANCELED" if order["status"] == "CANCELED" else "NEW"
            reports.append(self._report(order, kind, order["status"], now, None, 0.0, 0.0))
        elif order["status"] in ("EXPIRED", "CANCELED"):
            reports.append(self._report(order, "EXPIRED", order["status"], now, None, cum, cum_quote))
        for r in reports:
            if self.drop > 0:
                self.drop -= 1
                continue
            if self.hold > 0:  # out of order: this report arrives after a newer one
                self.hold -= 1
                self._held.append(r)
                continue
            await self._send(r)
            if self.duplicate > 0:
                self.duplicate -= 1
                await self._send(r)
            held, self._held = self._held, []
            for old in held:
                await self._send(old)

    async def _send(self, report: dict[str, Any]) -> None:
        for ws in list(self.sockets):
            try:
                await ws.send_json({"subscriptionId": 0, "event": report})
            except ConnectionError:  # the subscriber died (kill -9): the order stands, its report is lost
                if ws in self.sockets:
                    self.sockets.remove(ws)
        self.pushed += 1

    def _report(
        self,
        o: dict[str, Any],
        execution: str,
        status: str,
        now: int,
        fill: dict[str, str] | None,
        cum: float,
        cum_quote: float,
    ) -> dict[str, Any]:
        return {
            "e": "executionReport",
            "E": now,
            "s": o["symbol"],
            "c": o["clientOrderId"],
            "S": o["side"],
            "o": o["type"],
            "f": o["timeInForce"],
            "q": o["origQty"],
            "p": o["price"],
            "P": "0",
            "F": "0",
            "g": -1,
            "C": o["clientOrderId"] if status == "CANCELED" else "",
            "x": execution,
            "X": status,
            "r": "NONE",
            "i": o["orderId"],
            "l": fill["qty"] if fill else "0",
            "z": repr(cum) if fill else (o["executedQty"] if execution != "NEW" else "0"),
            "L": fill["price"] if fill else "0",
            "n": fill["commission"] if fill else "0",
            "N": fill["commissionAsset"] if fill else None,
            "T": now,
            "t": fill["tradeId"] if fill else -1,
            "I": 1,
            "w": status in ("NEW", "PARTIALLY_FILLED"),
            "m": False,
            "M": bool(fill),
            "O": o["time"],
            "Z": repr(cum_quote),
            "Y": "0",
            "Q": "0",
        }
