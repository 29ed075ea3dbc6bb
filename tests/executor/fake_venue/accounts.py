"""Wallets of the fake Binance venue: spot, cross and isolated margin, USD-M futures, positions, market lists."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tests.executor.fake_venue.core import FakeBinance

FUTURES_SYMBOL = {
    "symbol": "BTCUSDT",
    "pair": "BTCUSDT",
    "contractType": "PERPETUAL",
    "deliveryDate": 4133404800000,
    "onboardDate": 1569398400000,
    "status": "TRADING",
    "baseAsset": "BTC",
    "quoteAsset": "USDT",
    "marginAsset": "USDT",
    "pricePrecision": 2,
    "quantityPrecision": 3,
    "baseAssetPrecision": 8,
    "quotePrecision": 8,
    "underlyingType": "COIN",
    "settlePlan": 0,
    "triggerProtect": "0.0500",
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764", "tickSize": "0.10"},
        {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
        {"filterType": "MIN_NOTIONAL", "notional": "100"},
    ],
    "orderTypes": ["LIMIT", "MARKET"],
    "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
}


def add_routes(fake: FakeBinance, r: web.UrlDispatcher) -> None:
    async def spot(request: web.Request) -> web.Response:
        await fake.signed(request)
        rows = [{"asset": a, "free": str(v), "locked": "0"} for a, v in fake.bal("spot").items()]
        return web.json_response(
            {"makerCommission": 10, "takerCommission": 10, "canTrade": True, "accountType": "SPOT", "balances": rows}
        )

    async def cross(request: web.Request) -> web.Response:
        await fake.signed(request)
        rows = [_margin_asset(fake, "cross", a) for a in fake.bal("cross")]
        return web.json_response({"marginLevel": "999", "tradeEnabled": True, "userAssets": rows})

    async def isolated(request: web.Request) -> web.Response:
        await fake.signed(request)
        out = []
        for wallet in [w for w in fake.balances if w.startswith("isolated:")]:
            symbol = wallet.split(":", 1)[1]
            base, quote = symbol[:-4], symbol[-4:]
            out.append(
                {
                    "symbol": symbol,
                    "baseAsset": _margin_asset(fake, wallet, base),
                    "quoteAsset": _margin_asset(fake, wallet, quote),
                    "marginLevel": "999",
                    "enabled": True,
                }
            )
        return web.json_response({"assets": out})

    async def futures(request: web.Request) -> web.Response:
        await fake.signed(request)
        rows = [
            {
                "asset": a,
                "walletBalance": str(v),
                "availableBalance": str(v),
                "crossWalletBalance": str(v),
                "marginBalance": str(v),
                "unrealizedProfit": "0",
                "initialMargin": "0",
                "maintMargin": "0",
                "maxWithdrawAmount": str(v),
                "updateTime": 0,
            }
            for a, v in fake.bal("futures").items()
        ]
        return web.json_response({"assets": rows, "positions": []})

    async def position_risk(request: web.Request) -> web.Response:
        await fake.signed(request)
        return web.json_response([_position(s, p) for s, p in fake.positions.items()])

    async def margin_pairs(request: web.Request) -> web.Response:
        fake.requests.append(request.path)
        pairs = [{"symbol": s, "base": s[:-4], "quote": s[-4:], "isMarginTrade": True} for s in fake.book]
        return web.json_response(pairs)

    async def futures_info(request: web.Request) -> web.Response:
        fake.requests.append(request.path)
        info = {"timezone": "UTC", "serverTime": 0, "rateLimits": [], "assets": [], "symbols": [FUTURES_SYMBOL]}
        return web.Response(text=json.dumps(info), content_type="application/json")

    async def leverage_brackets(request: web.Request) -> web.Response:
        await fake.signed(request)
        bracket = {
            "bracket": 1,
            "initialLeverage": 20,
            "notionalCap": 1e9,
            "notionalFloor": 0,
            "maintMarginRatio": 0.004,
        }
        return web.json_response([{"symbol": "BTCUSDT", "brackets": [bracket]}])

    r.add_get("/fapi/v1/leverageBracket", leverage_brackets)
    r.add_get("/api/v3/account", spot)
    r.add_get("/sapi/v1/margin/account", cross)
    r.add_get("/sapi/v1/margin/isolated/account", isolated)
    r.add_get("/sapi/v1/margin/allPairs", margin_pairs)
    r.add_get("/sapi/v1/margin/isolated/allPairs", margin_pairs)
    r.add_get("/fapi/v1/exchangeInfo", futures_info)
    r.add_get("/fapi/v3/account", futures)
    r.add_get("/fapi/v3/positionRisk", position_risk)


def _margin_asset(fake: FakeBinance, wallet: str, asset: str) -> dict[str, Any]:
    free = fake.bal(wallet).get(asset, Decimal(0))
    debt = fake.borrowed.get((wallet, asset), Decimal(0))
    return {
        "asset": asset,
        "free": str(free),
        "locked": "0",
        "borrowed": str(debt),
        "interest": "0",
        "netAsset": str(free - debt),
        "totalAsset": str(free),
    }


def _position(symbol: str, p: dict[str, str]) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "positionSide": "BOTH",
        "positionAmt": p["positionAmt"],
        "entryPrice": p["entryPrice"],
        "breakEvenPrice": p["entryPrice"],
        "markPrice": p.get("markPrice", p["entryPrice"]),
        "unRealizedProfit": "0",
        "liquidationPrice": p.get("liquidationPrice", "0"),
        "isolatedMargin": "0",
        "notional": str(Decimal(p["positionAmt"]) * Decimal(p.get("markPrice", p["entryPrice"]))),
        "marginAsset": "USDT",
        "isolatedWallet": "0",
        "initialMargin": "0",
        "maintMargin": "0",
        "positionInitialMargin": "0",
        "openOrderInitialMargin": "0",
        "adl": 0,
        "bidNotional": "0",
        "askNotional": "0",
        "updateTime": 0,
    }


def auto_repay(fake: FakeBinance, wallet: str, asset: str) -> None:
    """Binance's sideEffectType AUTO_REPAY: what the order brought in pays the loan of that asset first."""
    bal = fake.bal(wallet)
    debt = fake.borrowed.get((wallet, asset), Decimal(0))
    pay = min(debt, max(bal.get(asset, Decimal(0)), Decimal(0)))
    if pay > 0:
        fake.borrowed[(wallet, asset)] = debt - pay
        bal[asset] -= pay
