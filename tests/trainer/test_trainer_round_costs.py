"""Online rounds train and judge policies on the costs the paper exchange really charges."""

from pathlib import Path
from typing import Any

from services.trainer.rounds import train_and_evaluate
from services.trainer.synth import make_market
from shared.config import Settings
from shared.sections.trainer import TrainerSettings


def test_round_costs_come_from_the_settings_and_the_venue_fee(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def record_costs(bars: Any, algo: str, out: Path, **kwargs: Any) -> None:
        seen.append(dict(kwargs["config"]["cost"]))  # no checkpoint: the round skips the trial

    cfg = TrainerSettings(policy_dir=str(tmp_path), fee_taker=0.002, half_spread=0.0003, impact=0.05)
    bars = make_market("regime_momentum", 1_000, seed=1).bars
    venue_fee = Settings().executor.venues["binance_futures"].taker_fee
    assert train_and_evaluate(cfg, bars, None, 0, record_costs, taker_fee=venue_fee) == ([], None)
    train_and_evaluate(cfg, bars, None, 0, record_costs)
    assert seen == [
        {"taker_fee": venue_fee, "half_spread": 0.0003, "impact": 0.05},
        {"taker_fee": 0.002, "half_spread": 0.0003, "impact": 0.05},
    ]
