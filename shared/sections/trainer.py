"""Settings of the trainer area (`TRADEWIND_TRAINER__...`)."""

from typing import Literal

from pydantic import Field, field_validator

from shared.sections.base import Section


class MarketRef(Section):
    """One market by venue and symbol, e.g. {"exchange": "binance_futures", "symbol": "BTC/USDT"}."""

    exchange: str
    symbol: str


class TrainerSettings(Section):
    """Settings of the trainer area: where policies go, and how the online trainer paces itself."""

    policy_dir: str = Field("var/policies", description="where checkpoints of trained policies are written")
    algo: str = Field("ppo", description="algorithm the online trainer trains challengers with: dqn, ppo or appo")
    venues: list[str] | None = Field(
        None, description="exchanges whose md:trades the online trainer reads (None: ingest's)"
    )
    symbol: str | None = Field(None, description="market the online trainer trains on (None: the busiest one seen)")
    group: str = Field("trainer", description="consumer group on md:trades:*")
    first_round_s: float = Field(
        60.0, gt=0, description="seconds before the first round (and between tries while data is short)"
    )
    bar_seconds: float = Field(1.0, gt=0, description="bar length the online trainer builds from md:trades:*")
    bar_clock: Literal["receive", "exchange"] = Field(
        "receive", description="time bars by local receive time (robust to looped replays) or exchange time"
    )
    loop_tolerance_s: float = Field(
        5.0,
        gt=0,
        description="a market's exchange time going back more than this means its sample looped: later trades "
        "repeat bars already seen and are not used",
    )
    window_bars: int = Field(20_000, ge=500, description="rolling window of bars kept in memory for training")
    min_bars: int = Field(400, ge=400, description="bars needed before the first training round")
    interval_s: float = Field(600.0, gt=0, description="seconds between online training rounds")
    timesteps: int = Field(8_192, ge=100, description="env steps per online training round (keep it small on CPU)")
    holdout_fraction: float = Field(
        0.25, gt=0, lt=1, description="most recent share of the window held out for evaluation"
    )
    gpus: float = Field(0.0, ge=0, description="GPUs per learner (num_gpus_per_learner); 0 = CPU")
    allow_short: bool = Field(True, description="let policies go short (only where the venue supports margin)")
    fee_taker: float = Field(0.001, ge=0, description="taker fee (fraction) the cost model charges")
    half_spread: float = Field(
        0.0001, ge=0, description="half spread (fraction) charged when bars carry no quoted spread"
    )
    impact: float = Field(0.1, ge=0, description="depth impact: cost fraction for trading one bar's whole volume")
    portfolio: list[MarketRef] = Field(
        [],
        description="markets the online trainer trains ONE portfolio policy over, time-aligned (empty: single-market)",
    )

    @field_validator("portfolio")
    @classmethod
    def _distinct_markets(cls, value: list[MarketRef]) -> list[MarketRef]:
        keys = {(m.exchange, m.symbol) for m in value}
        if value and (len(keys) != len(value) or len(keys) < 2):
            raise ValueError(f"expected at least two distinct markets (or none), found {len(keys)} in {len(value)}")
        return value
