"""Order outcomes classified, never guessed; the live account seen whole — real ccxt against the fake venue."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from services.executor.ccxt_gateway import CcxtGateway
from services.executor.gateway import StoredOrder
from shared.ids import client_order_id, invalid_reason
from shared.pretrade import UNKNOWN_OUTCOME, PreTradeGuard
from shared.schemas import OrderEvent, OrderIntent
from shared.sections.executor import CcxtVenue
from shared.sections.risk import RiskSettings
from tests.executor.fake_venue import Fault
from tests.executor.fake_venue.harness import fake_venue

FAST = {"receive_window_ms": 400, "clock_skew_ms": 0, "lookup_backoff_s": 0.02, "timeout_ms": 1500, "websocket": False}


def intent(cid: str, side: str = "buy", kind: str = "market", amount: float = 0.01, **kw: object) -> OrderIntent:
    return OrderIntent(cid, "binance", "BTC/USDT", side, kind, amount, 0, **kw)  # type: ignore[arg-type]


async def until_final(gateway: CcxtGateway, cid: str, timeout: float = 20.0) -> list[OrderEvent]:
    """Poll until ``cid`` has an event other than unknown; return every event of it seen."""
    seen: list[OrderEvent] = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1].status == "unknown":
        assert time.monotonic() < deadline, f"{cid} still unknown: {[(e.status, e.reason) for e in seen]}"
        seen += [e for e, _ in await gateway.poll() if e.client_order_id == cid]
    return seen


@pytest.mark.parametrize(
    "fault",
    [Fault(hang=True, hidden_lookups=2), Fault(status=502), Fault(status=503, hidden_lookups=1)],
    ids=["timeout-after-accept-visible-late", "502-after-accept", "503-after-accept-visible-late"],
)
async def test_an_order_the_venue_accepted_before_failing_is_unknown_then_found_never_resent(fault: Fault) -> None:
    async with fake_venue(**FAST) as (fake, cfg):
        gateway = CcxtGateway({"binance": cfg})
        try:
            fake.faults.append(fault)
            await gateway.submit(intent("t1"))
            events = await until_final(gateway, "t1")
        finally:
            await gateway.close()
    assert events[0].status == "unknown" and events[0].reason.startswith("venue.")
    assert events[-1].status == "filled" and events[-1].filled == pytest.approx(0.01)
    assert fake.requests.count("POST /api/v3/order") == 1  # looked up, never sent again
    assert len(fake.orders) == 1


@pytest.mark.parametrize("status", [429, 503])
async def test_a_request_the_venue_refused_to_process_is_not_placed_only_after_the_receive_window(status: int) -> None:
    async with fake_venue(**FAST) as (fake, cfg):
        gateway = CcxtGateway({"binance": cfg})
        try:
            fake.faults.append(Fault(accept=False, status=status))
            sent = time.time() * 1000
            await gateway.submit(intent("r1"))
            events = await until_final(gateway, "r1")
            decided = time.time() * 1000
        finally:
            await gateway.close()
    assert events[0].status == "unknown"
    assert (events[-1].status, events[-1].reason) == ("rejected", "venue.not_placed")
    assert decided - sent >= cfg.receive_window_ms  # "not found" inside the window proves nothing
    assert fake.requests.count("POST /api/v3/order") == 1 and fake.orders == {}


async def test_definite_refusals_are_rejections_at_once() -> None:
    async with fake_venue(**FAST) as (fake, cfg):
        gateway = CcxtGateway({"binance": cfg})
        try:
            await gateway.submit(intent("big", amount=1000.0))  # InsufficientFunds
            await gateway.submit(intent("bad id with spaces"))
            await gateway.submit(intent("x" * 33))
            events = {e.client_order_id: e for e, _ in await gateway.poll()}
        finally:
            await gateway.close()
    assert (events["big"].status, events["big"].reason) == ("rejected", "venue.InsufficientFunds")
    assert events["bad id with spaces"].reason == "venue.invalid_client_order_id"
    assert events["x" * 33].reason == "venue.invalid_client_order_id"
    assert fake.requests.count("POST /api/v3/order") == 1


async def test_knows_says_unknown_not_false_when_the_venue_cannot_answer() -> None:
    dead = CcxtVenue(api_key="k", secret="s", urls={"public": "http://127.0.0.1:9/api/v3"}, **FAST)  # type: ignore[arg-type]
    gateway = CcxtGateway({"binance": dead})
    try:
        assert await gateway.knows("k1", "binance", "BTC/USDT") is None
    finally:
        await gateway.close()


async def test_knows_is_false_only_after_the_receive_window() -> None:
    async with fake_venue(**FAST) as (_fake, cfg):
        gateway = CcxtGateway({"binance": cfg})
        try:
            assert await gateway.knows("never-sent", "binance", "BTC/USDT") is False
            assert time.time() * 1000 >= gateway._started_ms + cfg.receive_window_ms
        finally:
            await gateway.close()


def test_unknown_outcome_blocks_that_market_until_resolved() -> None:
    guard = PreTradeGuard(RiskSettings(), heartbeat_required=False)
    guard.set_mid("binance", "BTC/USDT", 60_000.0)
    guard.set_free("binance", "USDT", 1e6)
    guard.set_mid("binance", "ETH/USDT", 3_000.0)
    guard.on_order_event(OrderEvent("u1", "binance", "BTC/USDT", "buy", "unknown", 1))
    assert guard.check(intent("n1"), 2) == UNKNOWN_OUTCOME
    assert guard.check(OrderIntent("n2", "binance", "ETH/USDT", "buy", "market", 0.01, 0), 2) != UNKNOWN_OUTCOME
    guard.on_order_event(OrderEvent("u1", "binance", "BTC/USDT", "buy", "filled", 3))
    assert guard.check(intent("n3"), 4) is None


def test_client_order_ids_fit_every_live_venue() -> None:
    now = time.time_ns()
    for cid in (client_order_id("rm", now, key="binance_futures"), client_order_id("risk-hedge", now, seq=10**6)):
        assert invalid_reason(cid) is None and len(cid) <= 32
    assert client_order_id("rm", now, key="binance") != client_order_id("rm", now, key="binance_us")
    assert invalid_reason("risk-margin-binance_futures-1732950000000000000") is not None
    with pytest.raises(ValueError, match="shorten"):
        client_order_id("a-very-long-strategy-prefix", now)


async def test_balances_of_every_wallet_and_futures_positions() -> None:
    async with fake_venue(**FAST) as (fake, cfg):
        fake.balances["isolated:BTCUSDT"] = {"USDT": Decimal(200)}
        fake.positions["BTCUSDT"] = {"positionAmt": "-0.5", "entryPrice": "60000", "liquidationPrice": "90000"}
        gateway = CcxtGateway({"binance": cfg})
        try:
            await gateway.borrow("binance", "BTC", Decimal("0.1"), "cross")
            rows = {(b.wallet, b.asset): b for b in await gateway.balances()}
            positions = gateway.positions()
        finally:
            await gateway.close()
    assert rows[("spot", "USDT")].free == Decimal(100_000)
    assert rows[("cross", "USDT")].free == Decimal(5_000)
    assert rows[("cross", "BTC")].borrowed == Decimal("0.1")
    assert rows[("isolated:BTC/USDT", "USDT")].free == Decimal(200)
    assert [(p.symbol, p.margin_mode, p.amount, p.liquidation_price) for p in positions] == [
        ("BTC/USDT:USDT", "futures", Decimal("-0.5"), Decimal(90000))
    ]


async def test_audit_names_what_differs_from_our_fills() -> None:
    async with fake_venue(**FAST) as (fake, cfg):
        gateway = CcxtGateway({"binance": cfg})
        try:
            assert await gateway.audit() == {}  # the reference
            await gateway.submit(intent("a1"))
            await gateway.poll()
            assert await gateway.audit() == {}  # our own fill explains the change
            fake.balances["spot"]["USDT"] -= Decimal(25)  # someone else moved money
            diffs = await gateway.audit()
        finally:
            await gateway.close()
    assert list(diffs) == ["binance"] and "spot USDT" in diffs["binance"][0]


@pytest.mark.parametrize("fill_lands", ["before the read", "after the read"])
async def test_a_fill_recorded_while_the_audit_reads_is_never_a_mismatch(
    fill_lands: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order filled and recorded between the audit's read of the balances and its comparison: the read
    may or may not hold the fill, so that round must not count (it once halted a venue for a fill that was
    ours, counted twice or not at all)."""
    from services.executor import ccxt_account

    async with fake_venue(**FAST) as (fake, cfg):
        gateway = CcxtGateway({"binance": cfg})
        read = ccxt_account.wallet_balances

        async def read_while_trading(venue: str, venue_cfg: CcxtVenue, client: object) -> object:
            if fill_lands == "before the read":
                await gateway.submit(intent("during"))  # filled at the venue, not yet recorded...
                wallets = await read(venue, venue_cfg, client)
            else:
                wallets = await read(venue, venue_cfg, client)
                await gateway.submit(intent("during"))  # filled after the read
            await gateway.poll()  # ...recorded before the audit compares
            return wallets

        try:
            assert await gateway.audit() == {}  # the reference
            monkeypatch.setattr(ccxt_account, "wallet_balances", read_while_trading)
            assert await gateway.audit() == {}
            monkeypatch.setattr(ccxt_account, "wallet_balances", read)
            assert await gateway.audit() == {}  # the next round compares against a reference that holds the fill
            fake.balances["spot"]["USDT"] -= Decimal(25)  # and a real difference is still seen
            diffs = await gateway.audit()
        finally:
            await gateway.close()
    assert len(fake.orders_by_client_id("during")) == 1
    assert list(diffs) == ["binance"] and "spot USDT" in diffs["binance"][0]


async def test_an_earlier_runs_fill_found_at_start_up_is_no_mismatch() -> None:
    """A run dies after the venue filled its order; the next run reads the balances at start-up (the fill is
    in them) and then finds the order and records its fill. Counting it twice once halted the venue."""
    async with fake_venue(**FAST) as (fake, cfg):
        earlier = CcxtGateway({"binance": cfg})
        try:
            await earlier.submit(intent("earlier"))  # filled; that run dies before storing it
        finally:
            await earlier.close()
        gateway = CcxtGateway({"binance": cfg})
        try:
            await gateway.balances()  # start-up: what the guard is seeded with
            assert await gateway.knows("earlier", "binance", "BTC/USDT") is True  # reconcile: found, recorded
            fills = [e for e, _ in await gateway.poll() if e.client_order_id == "earlier"]
            assert fills and fills[-1].status == "filled"
            rounds = [await gateway.audit() for _ in range(2)]
        finally:
            await gateway.close()
    assert rounds == [{}, {}]
    assert len(fake.orders_by_client_id("earlier")) == 1


async def test_orders_left_resting_by_an_earlier_run_report_their_fills_after_a_restart() -> None:
    """One resting order fills while no executor runs, one after the restart: both fills are reported from
    what our records held, and the account still reconciles (a fill never seen would halt the venue)."""
    async with fake_venue(**FAST) as (fake, cfg):
        price = float(Decimal(fake.book["BTCUSDT"]["bids"][0][0]) * Decimal("0.99"))
        resting = {cid: intent(cid, kind="limit", price=round(price, 2)) for cid in ("while-down", "after")}
        earlier = CcxtGateway({"binance": cfg})
        try:
            for i in resting.values():
                await earlier.submit(i)
            accepted = {e.client_order_id: e for e, _ in await earlier.poll()}
        finally:
            await earlier.close()  # that run stops; our records say both orders rest, nothing filled
        assert {cid: e.status for cid, e in accepted.items()} == dict.fromkeys(resting, "accepted")
        await fake.fill_resting("while-down")

        gateway = CcxtGateway({"binance": cfg})
        try:
            await gateway.balances()  # start-up
            for cid, i in resting.items():
                await gateway.follow(StoredOrder(i, "accepted", accepted[cid].order_id, Decimal(0), Decimal(0)))
            assert await gateway.audit() == {}  # "after" still rests: no round counts, none halts
            await fake.fill_resting("after")
            seen = {e.client_order_id: e for e, _ in await gateway.poll()}
            deadline = time.monotonic() + 20
            while "after" not in seen or seen["after"].status != "filled":
                assert time.monotonic() < deadline, f"the fill after the restart was never reported: {seen}"
                seen |= {e.client_order_id: e for e, _ in await gateway.poll()}
            rounds = [await gateway.audit() for _ in range(2)]
        finally:
            await gateway.close()
    assert {cid: (seen[cid].status, sum(f.amount for f in seen[cid].fills)) for cid in resting} == {
        "while-down": ("filled", pytest.approx(0.01)),
        "after": ("filled", pytest.approx(0.01)),
    }
    assert rounds == [{}, {}]
