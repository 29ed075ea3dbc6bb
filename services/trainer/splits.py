"""The time split of a market's bars into train, validation and test (shared by training and evaluation)."""

from __future__ import annotations

from dataclasses import dataclass

from services.trainer.errors import TrainingError


@dataclass(frozen=True)
class Split:
    """Bar index ranges by time: train [0, train_end), validation [train_end, validation_end), test after."""

    train_end: int
    validation_end: int
    n_bars: int

    @classmethod
    def by_fractions(cls, n_bars: int, train: float, validation: float) -> Split:
        train_end = int(n_bars * train)
        validation_end = int(n_bars * (train + validation))
        if train_end < 300 or validation_end - train_end < 50 or n_bars - validation_end < 50:
            raise TrainingError(
                f"data: {n_bars} bars are too few for a train/validation/test split of "
                f"{train:.0%}/{validation:.0%}/{1 - train - validation:.0%} (need >= 300 train, 50 each held out)"
            )
        return cls(train_end, validation_end, n_bars)
