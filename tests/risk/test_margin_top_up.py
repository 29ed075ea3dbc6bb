"""Margin top-up: a margin account near its call level gets collateral from the spot wallet before any buy-back.

On the paper exchange (the simulation's venue), and through ccxt against the local fake Binance.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.executor.ccxt_account import make_exchange, transfer_to_margin, wallet_balances
from services.risk.crash import CrashDetector
from services.risk.margin import MarginSafety
from services.risk.simulate import MARGIN, PaperView
from shared.paper import PaperExchange
from shared.schemas import BookUpdate, OrderIntent
from shared.sections.executor import default_venues
from shared.sections.risk import RiskSettings
from tests.executor.fake_venue.harness import fake_venue

NS = 1_000_000_000
VENUE = "binance"


def _book(mid: float, ts: int) -> BookUpdate:
    levels = [(mid - 0.5 - i, 50.0) for i in range(5)], [(mid + 0.5 + i, 50.0) for i in range(5)]
    return BookUpdate(VENUE, "BTC/USDT", ts, ts, ts, levels[0], levels[1], snapshot=True)


def _short_then_rally(spot_usdt: float) -> tuple[PaperExchange, PaperView, CrashDetector, int]:
    """1 BTC shorted at ~100 against 150 USDT of collateral (level 2.5), then BTC rallies to 160 (level ~1.56),
    then to 170: under the 1.5 floor, above the venue's 1.3 call level."""
    ex = PaperExchange(default_venues(), seed=1, id_prefix="T")
    detector = CrashDetector(RiskSettings().crash)
    prices: dict[str, dict[str, float]] = {}
    view = PaperView(ex, [VENUE], prices)
    ts = NS
    ex.deposit(VENUE, "USDT", 150.0, ts, wallet=MARGIN)
    if spot_usdt:
        ex.deposit(VENUE, "USDT", spot_usdt, ts)
    for mid in (100.0, 100.0):
        ts += NS
        ex.on_book(_book(mid, ts))
        detector.on_book(_book(mid, ts))
    ex.submit(OrderIntent("short-1", VENUE, "BTC/USDT", "sell", "ioc", 1.0, ts, price=99.0, margin_mode="cross"), ts)
    ts += NS
    ex.poll(ts)
    assert view.short_debt(VENUE, "BTC") == pytest.approx(1.0, rel=1e-3)
    for mid in (130.0, 160.0, 170.0):
        ts += NS
        ex.on_book(_book(mid, ts))
        detector.on_book(_book(mid, ts))
        prices.setdefault(VENUE, {})["BTC"] = mid
        ex.poll(ts)
    level = view.margin_level(VENUE)
    assert level is not None and 1.3 < level < 1.5
    return ex, view, detector, ts


def test_spot_collateral_tops_up_the_margin_account_and_nothing_is_bought_back() -> None:
    ex, view, detector, ts = _short_then_rally(spot_usdt=1_000.0)
    risk = RiskSettings()
    actions = MarginSafety(risk, detector, view).check(ts)
    assert actions.intents == []  # the hedge stays on
    (top_up,) = actions.top_ups
    (event,) = actions.events
    assert event.kind == "margin_low" and event.detail["reduced"] == 0.0
    assert event.detail["top_up"] == pytest.approx(top_up.amount) and event.detail["top_up_asset"] == "USDT"
    before = view.margin_level(VENUE)
    ex.move(VENUE, top_up.asset, round(top_up.amount, 8), top_up.from_wallet, MARGIN, ts)
    after = view.margin_level(VENUE)
    assert before is not None and after is not None
    assert after == pytest.approx(risk.margin_target, rel=1e-4)
    assert event.detail["level_after_top_up"] == pytest.approx(after, rel=1e-4)
    assert view.spot(VENUE, "USDT") == pytest.approx(1_000.0 - top_up.amount)
    assert [e.kind for e in ex.accounts.ledger if e.kind == "transfer"] == ["transfer", "transfer"]
    assert not [n for n in ex.notices if n.kind == "liquidation"]


def test_too_little_spot_collateral_tops_up_what_it_can_and_buys_back_the_rest() -> None:
    _, view, detector, ts = _short_then_rally(spot_usdt=20.0)
    actions = MarginSafety(RiskSettings(), detector, view).check(ts)
    (top_up,) = actions.top_ups
    assert top_up.amount == pytest.approx(20.0)
    (buy,) = actions.intents
    assert (buy.side, buy.reduce_only, buy.margin_mode) == ("buy", True, "cross")
    (event,) = actions.events
    assert event.detail["top_up"] == pytest.approx(20.0) and float(event.detail["reduced"] or 0) > 0
    # The buy-back is sized for the assets after the top-up: smaller than with none.
    bare = _short_then_rally(spot_usdt=0.0)
    (alone,) = MarginSafety(RiskSettings(), bare[2], bare[1]).check(bare[3]).intents
    assert buy.amount < alone.amount


@pytest.mark.slow  # ccxt's import and market loading: ~18 s on the loaded 2-core machine
async def test_transfer_to_margin_through_ccxt_on_the_fake_venue() -> None:
    async with fake_venue(timeout_ms=3000) as (fake, cfg):
        client = make_exchange(cfg)
        try:
            transfer_id = await transfer_to_margin(client, "USDT", Decimal("1234.5"))
            assert transfer_id and transfer_id != "None"
            assert fake.balances["spot"]["USDT"] == Decimal(100_000) - Decimal("1234.5")
            assert fake.balances["cross"]["USDT"] == Decimal(5_000) + Decimal("1234.5")
            seen = {(b.wallet, b.asset): b.free for b in await wallet_balances("binance", cfg, client)}
            assert seen[("cross", "USDT")] == Decimal("6234.5")
        finally:
            await client.close()
