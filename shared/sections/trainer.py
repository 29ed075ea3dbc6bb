"""Settings of the trainer area (`TRADEWIND_TRAINER__...`)."""

from pydantic import Field

from shared.sections.base import Section


class TrainerSettings(Section):
    """Settings of the trainer area: where policies go, and how the online trainer paces itself."""

    policy_dir: str = Field("var/policies", description="where checkpoints of trained policies are written")
    algo: str = Field("ppo", description="algorithm the online trainer trains challengers with: dqn, ppo or appo")
    bar_seconds: float = Field(60.0, gt=0, description="bar length the online trainer builds from md:trades:*")
    window_bars: int = Field(20_000, ge=500, description="rolling window of bars kept in memory for training")
    min_bars: int = Field(1_000, ge=200, description="bars needed before the first training round")
    interval_s: float = Field(1_800.0, gt=0, description="seconds between online training rounds")
    timesteps: int = Field(20_000, ge=100, description="env steps per online training round (keep it small on CPU)")
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
