"""Settings of the risk area (`TRADEWIND_RISK__...`): pre-trade limits, halts, crash detection, hedging.

Limits resolve field by field, most specific first: ``symbols["binance:BTC/USDT"]``, then
``symbols["BTC/USDT"]``, then ``venues["binance"]``, then ``limits``. An override names only the
fields it changes. ``None`` means "no limit"; live trading refuses to start while any limit of a
live venue is ``None`` or was never set explicitly (see ``shared.pretrade.missing_limits``).
"""

from __future__ import annotations

from pydantic import Field

from shared.sections.base import Section


class Limits(Section):
    """Pre-trade limits of one venue/symbol. Notional values are in the symbol's quote asset."""

    max_order_notional: float | None = Field(25_000.0, gt=0, description="largest value of one order")
    max_position_notional: float | None = Field(
        100_000.0, gt=0, description="largest |position| value per asset and venue (spot + margin)"
    )
    max_gross_exposure: float | None = Field(250_000.0, gt=0, description="sum of |position| values per venue")
    max_net_exposure: float | None = Field(150_000.0, gt=0, description="|sum of signed position values| per venue")
    max_open_orders: int | None = Field(50, ge=0, description="resting orders per venue")
    orders_per_s: float | None = Field(20.0, gt=0, description="token-bucket refill rate per venue")
    order_burst: int = Field(40, ge=1, description="token-bucket capacity per venue")
    price_band_bps: float | None = Field(
        200.0, gt=0, description="a limit price further than this from mid is a fat finger"
    )
    fee_buffer: float = Field(0.002, ge=0, description="extra quote a buy must have free, for fees")


class LimitOverride(Section):
    """A partial ``Limits``: only the fields given replace the inherited ones."""

    max_order_notional: float | None = Field(None, gt=0)
    max_position_notional: float | None = Field(None, gt=0)
    max_gross_exposure: float | None = Field(None, gt=0)
    max_net_exposure: float | None = Field(None, gt=0)
    max_open_orders: int | None = Field(None, ge=0)
    orders_per_s: float | None = Field(None, gt=0)
    order_burst: int | None = Field(None, ge=1)
    price_band_bps: float | None = Field(None, gt=0)
    fee_buffer: float | None = Field(None, ge=0)


class CrashSettings(Section):
    """The flash-crash detector (services/risk/crash.py). Windows are in seconds of market time."""

    windows_s: list[float] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0],
        min_length=1,
        description="price velocity is measured over each of these windows (flash crashes last seconds to minutes)",
    )
    vol_halflife_s: float = Field(120.0, gt=0, description="half-life of the 1-second return variance estimate")
    vol_floor: float = Field(0.0002, gt=0, description="least 1-second volatility assumed (quiet markets)")
    min_drop: float = Field(0.02, gt=0, lt=1, description="a crash needs the mid down at least this much in the window")
    z_threshold: float = Field(8.0, gt=0, description="...and that drop this many window-volatilities deep")
    divergence_alone: float = Field(
        0.08, gt=0, lt=1, description="below the other venues' composite by this much is a crash on its own"
    )
    depth_collapse: float = Field(0.35, gt=0, lt=1, description="bid depth below this fraction of its average")
    depth_band: float = Field(0.01, gt=0, description="bid depth is summed within this fraction of mid")
    spread_blowout: float = Field(5.0, gt=1, description="spread above this multiple of its average")
    flow_imbalance: float = Field(0.6, gt=0, le=1, description="(sell - buy) / total taker volume in the window")
    divergence: float = Field(0.02, gt=0, lt=1, description="below the composite by this much corroborates")
    confirmations: int = Field(1, ge=0, le=5, description="corroborating signals a velocity trigger needs")
    recovery_bounce: float = Field(0.25, gt=0, lt=1, description="share of the fall retraced that starts recovery")
    normal_within: float = Field(0.01, gt=0, description="back within this of the pre-crash price ends recovery")
    calm_s: float = Field(30.0, gt=0, description="...or this long without a new low and with calm velocity")
    warmup_s: float = Field(5.0, ge=0, description="no verdicts before this much data per market")
    stale_composite_s: float = Field(5.0, gt=0, description="other venues' mids older than this are ignored")


class HedgeSettings(Section):
    """The crash hedger (services/risk/hedge.py)."""

    enabled: bool = True
    ratio: float = Field(1.0, gt=0, le=1.5, description="hedge size as a share of the exposed spot inventory")
    open_margin_level: float = Field(2.0, gt=1, description="the hedge may not take a margin account below this")
    slice_notional: float = Field(20_000.0, gt=0, description="largest hedge order; bigger hedges go in slices")
    band: float = Field(0.01, gt=0, lt=0.5, description="IOC limit this far through the touch (no blind market orders)")
    follow_ratio: float = Field(
        0.5, gt=0, le=1, description="a calm venue hedges a crash only if it fell this share of the crash too"
    )
    margin_mode: str = Field("cross", pattern="^(cross|isolated)$")


class SimulationSettings(Section):
    """`tradewind risk simulate` defaults."""

    initial_value: float = Field(100_000.0, gt=0, description="portfolio value in quote at the start")
    base_fraction: float = Field(0.5, ge=0, le=1, description="share of it held as spot base inventory")
    thin_liquidity: float = Field(0.8, ge=0, lt=1, description="share of book depth gone at the crash's bottom")
    reaction_ms: float = Field(
        1.0,
        ge=0,
        description="detector → order handed to the venue (the bus hop); the venue's own latency, fees"
        " and margin rules are the paper exchange's (executor.venues)",
    )


class RiskSettings(Section):
    """Settings of the risk area."""

    limits: Limits = Limits()
    venues: dict[str, LimitOverride] = Field(default_factory=dict, description="per-venue limit overrides")
    symbols: dict[str, LimitOverride] = Field(
        default_factory=dict, description='per-symbol overrides: "BTC/USDT" or "binance:BTC/USDT"'
    )
    heartbeat_s: float = Field(1.0, gt=0, description="the risk service's heartbeat period on risk:control")
    heartbeat_timeout_s: float = Field(5.0, gt=0, description="an executor halts when risk is silent this long")
    stale_after_s: float = Field(10.0, gt=0, description="a venue with no market data this long is halted")
    drawdown_intraday: float = Field(0.05, gt=0, lt=1, description="halt at this loss from the day's peak equity")
    drawdown_total: float = Field(0.15, gt=0, lt=1, description="halt at this loss from the all-time peak equity")
    margin_floor: float = Field(1.5, gt=1, description="reduce or top up a margin account below this level")
    margin_target: float = Field(2.0, gt=1, description="...back to this level")
    group: str = Field("risk", description="consumer group of the risk service")
    live_balances_wait_s: float = Field(
        60.0, gt=0, description="live: how long the risk service waits for the venues' stored balances, then refuses"
    )
    market_data_venues: list[str] = Field(
        default_factory=lambda: ["binance", "binance_futures", "coinbase", "kraken", "okx", "bybit"],
    )
    crash: CrashSettings = CrashSettings()
    hedge: HedgeSettings = HedgeSettings()
    simulation: SimulationSettings = SimulationSettings()
