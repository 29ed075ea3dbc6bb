"""Training configuration: files, overrides, and errors that say what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.trainer.errors import TrainingError
from services.trainer.splits import Split
from services.trainer.training import env_config_from, load_config


def test_defaults_then_file_then_overrides(tmp_path: Path) -> None:
    user = tmp_path / "mine.toml"
    user.write_text('[training]\nlr = 0.01\n[env]\nreward = "dsr"\n')
    config = load_config("ppo", user, ("training.lr=0.002", "env.levels=[0.0, 1.0]", "features.time=none"))
    assert config["training"]["lr"] == 0.002  # the CLI wins over the file
    assert config["training"]["num_epochs"] == load_config("ppo")["training"]["num_epochs"]  # untouched default
    env = env_config_from(config)
    assert env.reward == "dsr" and env.levels == (0.0, 1.0)
    assert config["features"]["time"] == "none"


@pytest.mark.parametrize(
    ("algo", "overrides", "expected"),
    [
        ("a2c", (), "expected one of dqn, ppo, appo"),
        ("ppo", ("lr=0.1",), "expected section.key=value"),
    ],
)
def test_bad_config_is_named(algo: str, overrides: tuple[str, ...], expected: str) -> None:
    with pytest.raises(TrainingError, match=expected):
        load_config(algo, None, overrides)


def test_bad_env_setting_is_named() -> None:
    with pytest.raises(TrainingError, match=r"\[env\] section: EnvConfig.reward"):
        env_config_from(load_config("dqn", None, ("env.reward=sharpe",)))


def test_split_is_by_time_and_needs_enough_bars() -> None:
    split = Split.by_fractions(1_000, 0.6, 0.2)
    assert (split.train_end, split.validation_end) == (600, 800)
    with pytest.raises(TrainingError, match="too few"):
        Split.by_fractions(200, 0.6, 0.2)
