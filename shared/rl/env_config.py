"""How a policy trades (target levels, shorting, costs) and what it observes.

Stored with every checkpoint (`tradewind.json`), so the backtest and the executor's RL strategy
replay exactly the trading rules and observation layout the policy was trained with. The
observation at bar t is `[features[t], position, position x last-bar return x PNL_FEATURE_SCALE]`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from shared.rl.costs import CostModel
from shared.rl.features import WARMUP, MarketData

RewardKind = Literal["pnl", "log", "dsr", "drawdown"]
PNL_FEATURE_SCALE = 100.0  # last-bar PnL in percent, comparable to the normalised features


@dataclass(frozen=True)
class EnvConfig:
    """How the env trades and rewards; stored with each checkpoint so backtests replay it exactly."""

    levels: tuple[float, ...] = (-1.0, 0.0, 1.0)
    allow_short: bool = True  # only where the venue supports margin
    continuous: bool = False
    episode_len: int = 1_024
    reward: RewardKind = "pnl"
    reward_scale: float = 100.0
    drawdown_penalty: float = 1.0
    dsr_eta: float = 0.01
    initial_cash: float = 10_000.0
    cost: CostModel = field(default_factory=CostModel)
    start: int = 0  # the bar range episodes are drawn from: [start, stop)
    stop: int | None = None

    def __post_init__(self) -> None:
        if self.reward not in ("pnl", "log", "dsr", "drawdown"):
            raise ValueError(f"EnvConfig.reward: expected pnl, log, dsr or drawdown, found {self.reward!r}")
        if not self.levels or any(abs(x) > 1.0 for x in self.levels):
            raise ValueError(f"EnvConfig.levels: expected positions within [-1, 1], found {self.levels}")
        if not self.allow_short and not any(x >= 0 for x in self.levels):
            raise ValueError("EnvConfig.levels: shorting is off but every level is negative")

    @property
    def position_levels(self) -> tuple[float, ...]:
        """The allowed target positions (negative ones dropped when shorting is not allowed)."""
        return tuple(x for x in self.levels if self.allow_short or x >= 0.0)

    @property
    def min_position(self) -> float:
        return -1.0 if self.allow_short else 0.0

    def window(self, n_bars: int) -> tuple[int, int]:
        """The first decision bar and the last bar an episode may reach."""
        lo = max(self.start, min(WARMUP, n_bars // 4))
        hi = n_bars if self.stop is None else min(self.stop, n_bars)
        if hi - lo < 2:
            raise ValueError(f"EnvConfig: the bar range [{lo}, {hi}) is too short for an episode")
        return lo, hi

    def with_range(self, start: int, stop: int | None) -> EnvConfig:
        return replace(self, start=start, stop=stop)


def observation_size(market: MarketData) -> int:
    return market.features.shape[1] + 2


def observe(features: NDArray[np.float32], position: float, last_return: float) -> NDArray[np.float32]:
    """One observation: the bar's features, the position held, and that position's last-bar PnL."""
    obs = np.empty(features.shape[-1] + 2, dtype=np.float32)
    obs[:-2] = features
    obs[-2] = position
    obs[-1] = position * last_return * PNL_FEATURE_SCALE
    return obs


def env_config_to_dict(env_config: EnvConfig) -> dict[str, Any]:
    raw = asdict(env_config)
    raw["cost"] = env_config.cost.to_dict()
    raw["levels"] = list(env_config.levels)
    return raw


def env_config_from_dict(raw: dict[str, Any]) -> EnvConfig:
    """Rebuild the EnvConfig a checkpoint was trained with."""
    raw = dict(raw)
    raw["cost"] = CostModel.from_dict(raw["cost"])
    raw["levels"] = tuple(raw["levels"])
    return EnvConfig(**raw)
