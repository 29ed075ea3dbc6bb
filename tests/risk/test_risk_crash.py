"""Flash-crash detection and hedging on real recorded Binance data (tests/data/risk/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.risk.crash import CrashDetector
from services.risk.hedge import Hedger
from services.risk.margin import margin_reduce_amount
from services.risk.replay import NS, CrashProfile, inject, load_messages
from services.risk.simulate import SimConfig, simulate
from shared.schemas import BookUpdate, Trade
from shared.sections.risk import CrashSettings, HedgeSettings, RiskSettings

DATA = Path(__file__).parents[1] / "data" / "risk" / "binance_btcusdt_20240808-09.jsonl.gz"


@pytest.fixture(scope="module")
def crash_runs() -> dict[bool, dict]:
    return {
        hedge: simulate(DATA, RiskSettings(), SimConfig(crash_depth=0.3, fall_s=5.0, recover_s=60.0, hedge=hedge))
        for hedge in (True, False)
    }


def test_unhedged_crash_costs_what_the_inventory_loses(crash_runs: dict[bool, dict]) -> None:
    run = crash_runs[False]
    assert run["detected"]
    # Half the portfolio in BTC, price down 30% at the bottom: about 15% of the value.
    assert run["max_drawdown"] == pytest.approx(0.5 * 0.3, rel=0.05)
    assert run["hedge_size"] == 0


def test_hedge_halves_the_drawdown_without_liquidation_and_unwinds(crash_runs: dict[bool, dict]) -> None:
    hedged, naked = crash_runs[True], crash_runs[False]
    assert hedged["max_drawdown"] <= 0.5 * naked["max_drawdown"]
    assert hedged["liquidations"] == 0
    assert hedged["hedge_size"] > 0
    # Fully unwound, interest included, up to the venue's 8-decimal fee rounding (under a millionth of it).
    assert hedged["hedge_left"] <= 1e-6 * hedged["hedge_size"]
    assert hedged["interest_paid"] > 0 and hedged["fees_paid"] > 0
    assert hedged["false_alarms"] == 0
    assert hedged["events"][:2] == ["crash_start", "hedge_open"]
    assert {"crash_recovery", "crash_end", "hedge_closed"} <= set(hedged["events"])
    # The hedge goes out within the first tenth of the fall.
    assert 0 < hedged["detection_latency_ms"] < 500


def test_exposure_sized_hedge_capped_by_margin() -> None:
    # The exposure is half of 100k; with the quote as collateral, opening at margin level 2 allows
    # (50k - 0) / (2 - 1) = 50k of short: the whole exposure. At level 5 only 12.5k fits.
    tight = RiskSettings(hedge=HedgeSettings(open_margin_level=5.0))
    run = simulate(DATA, tight, SimConfig(crash_depth=0.3, fall_s=5.0, recover_s=60.0))
    assert run["hedge_notional"] == pytest.approx(50_000 / (5.0 - 1.0), rel=0.03)
    assert run["liquidations"] == 0
    assert run["max_drawdown"] > 0.5 * 0.15  # a quarter-hedged crash still loses most of the unhedged 15%


@pytest.mark.parametrize("venue", ["binance", "binance_futures"])
def test_no_false_alarm_on_recorded_sessions(venue: str) -> None:
    run = simulate(DATA, RiskSettings(), SimConfig(crash_depth=0.0, venue=venue))
    assert run["crash_states"] == 0
    assert run["false_alarms"] == 0
    assert run["hedge_size"] == 0
    assert run["events"] == []


def test_crash_profile_scales_one_venue_and_thins_its_book() -> None:
    messages = load_messages(DATA)
    start = messages[0].recv_ts + 60 * NS
    profile = CrashProfile(frozenset({"binance"}), start, 0.3, 5.0, 60.0, thin=0.8)
    assert profile.factor(start + 5 * NS) == pytest.approx(0.7)
    assert profile.factor(start + 35 * NS) == pytest.approx(0.85)
    out = list(inject(messages, profile))
    bottom = start + 5 * NS
    before = [m for m in messages if m.exchange == "binance" and isinstance(m, BookUpdate) and m.recv_ts <= bottom][-1]
    after = [m for m in out if m.exchange == "binance" and isinstance(m, BookUpdate) and m.recv_ts <= bottom][-1]
    f = profile.factor(after.recv_ts)
    keep = 1 - 0.8 * (1 - f) / 0.3
    assert after.bids[0][0] == pytest.approx(before.bids[0][0] * f)
    assert after.bids[0][1] == pytest.approx(before.bids[0][1] * keep)
    falling = [m for m in out if isinstance(m, Trade) and m.exchange == "binance" and start < m.recv_ts < bottom]
    assert falling and all(t.side == "sell" for t in falling)
    untouched = [m for m in out if m.exchange == "binance_futures"]
    assert untouched == [m for m in messages if m.exchange == "binance_futures"]


def _book(venue: str, mid: float, ts: int, amount: float = 5.0) -> BookUpdate:
    return BookUpdate(venue, "BTC/USDT", ts, ts, ts, [(mid - 0.5, amount)], [(mid + 0.5, amount)], snapshot=True)


def test_state_machine_normal_crash_recovery_normal() -> None:
    d = CrashDetector(CrashSettings(warmup_s=1.0, calm_s=5.0))
    ts = 0
    for _ in range(100):  # calm market on two venues: 10 s at 10 Hz
        ts += NS // 10
        assert d.on_book(_book("a", 100.0, ts)) is None
        assert d.on_book(_book("b", 100.0, ts)) is None
    states = []
    for price in [99.0, 98.0, 96.0, 94.0, 90.0, 85.0, 80.0, 82.0, 86.0, 92.0, 96.0, 99.5]:
        ts += NS // 2
        d.on_book(_book("b", 100.0, ts))
        t = d.on_book(_book("a", price, ts, amount=1.0))
        if t:
            states.append((t.to_state, price))
    assert [s for s, _ in states] == ["crash", "recovery", "normal"]
    assert states[0][1] <= 98.0  # a 2% fall, 2 bp-volatility market, below the composite: crash
    assert states[1][1] == 86.0  # 6 of the 20 fallen points retraced (>= 25%)
    assert states[2][1] == 99.5  # back within 1% of the pre-crash 100


def test_venue_crash_without_followers_hedges_on_itself_else_on_a_follower() -> None:
    class View:
        def spot(self, venue: str, asset: str) -> float:
            return 1.0 if venue == "a" else 0.0

        def short_debt(self, venue: str, asset: str) -> float:
            return 0.0

        def margin_capacity(self, venue: str, asset: str, price: float, level: float) -> float:
            return 10.0

        def margin_venues(self) -> list[str]:
            return ["a", "b"]

        def resting_bids(self, venue: str) -> list[tuple[str, str]]:
            return [("bid-1", "BTC/USDT")]

    for b_follows, expected in ((False, "a"), (True, "b")):
        d = CrashDetector(CrashSettings(warmup_s=1.0))
        hedger = Hedger(HedgeSettings(), d, View())
        ts = 0
        for _ in range(50):
            ts += NS // 10
            d.on_book(_book("a", 100.0, ts))
            d.on_book(_book("b", 100.0, ts))
            d.on_book(_book("c", 100.0, ts))
        ts += NS // 10
        d.on_book(_book("b", 98.5 if b_follows else 100.0, ts))
        t = d.on_book(_book("a", 97.0, ts))
        assert t is not None and t.to_state == "crash"
        actions = hedger.on_transition(t)
        cancels = [i for i in actions.intents if i.cancel]
        sells = [i for i in actions.intents if not i.cancel]
        assert [c.client_order_id for c in cancels] == ["bid-1"]
        assert actions.controls[0].limits == {"block_buys": 1.0} and actions.controls[0].exchange == "a"
        assert len(sells) == 1 and sells[0].exchange == expected and sells[0].side == "sell"
        assert sells[0].amount == pytest.approx(1.0)  # the exposed spot inventory, ratio 1
        assert sells[0].margin_mode == "cross"
        # Another market of the same asset on the same venue crashing hedges nothing more.
        for i in range(50):
            at = ts + i * NS // 10
            d.on_book(BookUpdate("a", "BTC/USDC", i, at, at, [(99.5, 5.0)], [(100.5, 5.0)], snapshot=True))
            d.on_book(_book("c", 100.0, at))
        later = ts + 5 * NS
        again = d.on_book(BookUpdate("a", "BTC/USDC", 99, later, later, [(94.5, 5.0)], [(95.5, 5.0)], snapshot=True))
        assert again is not None and again.to_state == "crash"
        assert [i for i in hedger.on_transition(again).intents if not i.cancel] == []


def test_margin_reduce_amount_reaches_target_level() -> None:
    assets, debt, price = 120.0, 1.0, 100.0  # level 1.2
    x = margin_reduce_amount(assets, debt, price, 2.0)
    assert (assets - x * price) / ((debt - x) * price) == pytest.approx(2.0)
    assert margin_reduce_amount(300.0, 1.0, 100.0, 2.0) == 0.0


FIVE_VENUES = DATA.parent / "cryptofeed_5venues.jsonl.gz"


def _crash_starts(messages: list[BookUpdate | Trade]) -> list[tuple[str, str]]:
    d = CrashDetector(CrashSettings())
    starts = []
    for msg in messages:
        t = d.on_book(msg) if isinstance(msg, BookUpdate) else d.on_trade(msg)
        if t is not None and t.to_state == "crash":
            starts.append((t.exchange, t.symbol))
    return starts


def test_no_false_alarm_on_five_venues_forty_markets() -> None:
    messages = load_messages(FIVE_VENUES)
    assert len({m.exchange for m in messages}) == 5
    assert len({(m.exchange, m.symbol) for m in messages}) >= 30  # majors and thin markets alike
    assert _crash_starts(messages) == []


def test_the_same_sessions_do_crash_when_one_venue_does() -> None:
    messages = load_messages(FIVE_VENUES)
    kraken = [m for m in messages if m.exchange == "kraken"]
    start = kraken[0].recv_ts + 15 * NS  # after the detector's warm-up, inside the 30 s session
    crashed = list(inject(messages, CrashProfile(frozenset({"kraken"}), start, 0.3, 5.0, 60.0)))
    starts = _crash_starts(crashed)
    assert starts and {venue for venue, _ in starts} == {"kraken"}
