"""The ccxt client a live venue gets: keys, the testnet step, then the URL overrides (no network)."""

from __future__ import annotations

import ccxt.pro as ccxt_pro

from services.executor.ccxt_account import make_exchange
from shared.sections.executor import CcxtVenue

LOCAL = "http://127.0.0.1:9/api/v3"


async def test_testnet_uses_the_sandbox_urls_and_the_overrides_still_win() -> None:
    reference = ccxt_pro.binance()
    sandbox = reference.urls["test"]
    production = reference.urls["api"]
    venue = CcxtVenue(api_key="k", secret="s", testnet=True, urls={"public": LOCAL, "ws.ws-api.spot": "ws://x/ws"})  # type: ignore[arg-type]
    live = CcxtVenue(api_key="k", secret="s", urls={"public": LOCAL})  # type: ignore[arg-type]
    exchange, plain = make_exchange(venue), make_exchange(live)
    try:
        assert sandbox["private"] != production["private"]  # else this test proves nothing
        assert exchange.urls["api"]["private"] == sandbox["private"]  # not overridden: the test network
        assert exchange.urls["api"]["fapiPrivate"] == sandbox["fapiPrivate"]
        assert exchange.urls["api"]["public"] == LOCAL  # overridden after the sandbox switch: ours
        assert exchange.urls["api"]["ws"]["ws-api"]["spot"] == "ws://x/ws"
        assert exchange.urls["api"]["ws"]["ws-api"]["linear"] == sandbox["ws"]["ws-api"]["linear"]
        assert plain.urls["api"]["private"] == production["private"]  # without testnet: the real venue
        assert plain.urls["api"]["public"] == LOCAL
    finally:
        for client in (reference, exchange, plain):
            await client.close()
