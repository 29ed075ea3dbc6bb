"""The live gate: every gate closed on its own names itself and the exact variable to set."""

from __future__ import annotations

import pytest

from services.executor.ccxt_gateway import LiveGateClosed, live_gate
from services.executor.gateways import build_gateway
from shared.config import Settings
from shared.sections.executor import CcxtVenue, ExecutorSettings
from shared.sections.risk import LimitOverride, Limits, RiskSettings

KEY, SECRET = "test-key", "test-secret"
LIMITS = {
    "max_order_notional": 500.0,
    "max_position_notional": 1_000.0,
    "max_gross_exposure": 2_000.0,
    "max_net_exposure": 1_500.0,
    "max_open_orders": 5,
    "orders_per_s": 2.0,
    "order_burst": 4,
    "price_band_bps": 100.0,
    "fee_buffer": 0.002,
}


def live(venues: dict[str, CcxtVenue], risk: RiskSettings) -> Settings:
    return Settings(mode="live", live=True, executor=ExecutorSettings(live_venues=venues), risk=risk)


def keyed(**kw: object) -> CcxtVenue:
    return CcxtVenue(api_key=KEY, secret=SECRET, **kw)  # type: ignore[arg-type]


def every_limit(*venues: str) -> RiskSettings:
    return RiskSettings(venues={v: LimitOverride(**LIMITS) for v in venues})  # type: ignore[arg-type]


def test_every_gate_open_only_with_everything_explicit() -> None:
    assert live_gate(live({"binance": keyed()}, every_limit("binance"))) is None
    assert "mode gate closed" in (live_gate(Settings(mode="paper")) or "")
    assert "TRADEWIND_LIVE=1" in (live_gate(Settings(mode="live")) or "")
    assert "no live venue" in (live_gate(Settings(mode="live", live=True)) or "")


@pytest.mark.parametrize(
    ("venue", "variable"),
    [
        (CcxtVenue(), "TRADEWIND_EXECUTOR__LIVE_VENUES__binance__API_KEY"),
        (CcxtVenue(api_key="", secret=SECRET), "TRADEWIND_EXECUTOR__LIVE_VENUES__binance__API_KEY"),  # type: ignore[arg-type]
        (CcxtVenue(api_key=KEY, secret="  "), "TRADEWIND_EXECUTOR__LIVE_VENUES__binance__SECRET"),  # type: ignore[arg-type]
    ],
)
def test_missing_or_empty_keys_close_the_gate(venue: CcxtVenue, variable: str) -> None:
    why = live_gate(live({"binance": venue}, every_limit("binance"))) or ""
    assert why.startswith("API key gate closed") and variable in why
    assert KEY not in why and SECRET not in why


def test_limits_must_be_set_for_each_live_venue_with_no_fallback() -> None:
    venues = {"binance": keyed(), "kraken": keyed()}
    # the paper defaults, and even risk.limits set explicitly, are not a decision about a live venue
    for risk in (RiskSettings(), RiskSettings(limits=Limits(max_order_notional=1_000.0))):
        why = live_gate(live(venues, risk)) or ""
        assert why.startswith("risk limit gate closed") and "binance: limits not set" in why
        assert "kraken: limits not set" in why
    one_short = every_limit("binance", "kraken")
    one_short.venues["kraken"] = LimitOverride(**{k: v for k, v in LIMITS.items() if k != "order_burst"})  # type: ignore[arg-type]
    why = live_gate(live(venues, one_short)) or ""
    assert "binance" not in why and "TRADEWIND_RISK__VENUES__kraken__order_burst" in why
    assert "max_order_notional" not in why  # only the field not set is named
    unlimited = every_limit("binance")
    unlimited.venues["binance"] = LimitOverride(**{**LIMITS, "price_band_bps": None})  # type: ignore[arg-type]
    assert "binance: unlimited price_band_bps" in (live_gate(live({"binance": keyed()}, unlimited)) or "")

    # the executor refuses to start on that gate, naming what is missing
    with pytest.raises(LiveGateClosed, match="TRADEWIND_RISK__VENUES__kraken__max_order_notional"):
        build_gateway(live(venues, every_limit("binance")), "t")


def test_limits_set_through_the_environment_open_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the refusal names are the ones that work (environment, venue in lower case)."""
    for name, value in LIMITS.items():
        monkeypatch.setenv(f"TRADEWIND_RISK__VENUES__binance__{name}", str(value))
    settings = Settings(mode="live", live=True, executor=ExecutorSettings(live_venues={"binance": keyed()}))
    assert live_gate(settings) is None


def test_withdrawals_stay_off_unless_the_allow_list_is_well_formed() -> None:
    risk = every_limit("binance")
    assert live_gate(live({"binance": keyed()}, risk)) is None  # no allow-list: withdrawals refused, trading fine
    good = keyed(withdraw_allowlist={"USDT": ["TAllowedAddress000000000000000000"], "BTC": []})
    assert live_gate(live({"binance": good}, risk)) is None
    for bad in (["", "TAllowed"], [" TAllowed"]):
        why = live_gate(live({"binance": keyed(withdraw_allowlist={"USDT": bad})}, risk)) or ""
        assert why.startswith("withdrawal gate closed")
        assert "TRADEWIND_EXECUTOR__LIVE_VENUES__binance__WITHDRAW_ALLOWLIST" in why
