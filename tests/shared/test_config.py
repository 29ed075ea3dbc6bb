"""Every bad setting yields an error naming the setting; secrets never print."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import ConfigError, Settings, load_settings, unknown_env_settings


def run_config(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("TRADEWIND_") and k not in ("REDIS_URL", "DATABASE_URL")
    }
    return subprocess.run(
        [sys.executable, "-m", "shared", "config", *args], env={**base, **env}, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TRADEWIND_MODE": "yolo"}, "TRADEWIND_MODE"),
        ({"TRADEWIND_BUS__MAXLEN": "lots"}, "TRADEWIND_BUS__MAXLEN"),
        ({"TRADEWIND_BUS__MAXLEN": "0"}, "TRADEWIND_BUS__MAXLEN"),
        ({"TRADEWIND_BUS__BATCH_SIZE": "-5"}, "TRADEWIND_BUS__BATCH_SIZE"),
        ({"TRADEWIND_METRICS__PORT": "70000"}, "TRADEWIND_METRICS__PORT"),
        ({"TRADEWIND_LOG__LEVEL": "LOUD"}, "TRADEWIND_LOG__LEVEL"),
        ({"TRADEWIND_LIVE": "maybe"}, "TRADEWIND_LIVE"),
        ({"TRADEWIND_STORAGE__FLUSH_INTERVAL_S": "0"}, "TRADEWIND_STORAGE__FLUSH_INTERVAL_S"),
        ({"TRADEWIND_BUS__TYPO": "1"}, "TRADEWIND_BUS__TYPO"),
        ({"TRADEWIND_MOOD": "1"}, "TRADEWIND_MOOD"),
        ({"TRADEWIND_CONFIG": "/nonexistent/tradewind.toml"}, "TRADEWIND_CONFIG"),
    ],
)
def test_bad_setting_exits_with_a_message_naming_it(env, named):
    result = run_config(env)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_toml_file_then_environment_precedence(tmp_path: Path):
    config = tmp_path / "tw.toml"
    config.write_text('mode = "paper"\n[bus]\nmaxlen = 5000\nbatch_size = 7\n')
    result = run_config({"TRADEWIND_CONFIG": str(config), "TRADEWIND_BUS__BATCH_SIZE": "9"})
    assert result.returncode == 0, result.stderr
    assert '"mode": "paper"' in result.stdout
    assert '"maxlen": 5000' in result.stdout
    assert '"batch_size": 9' in result.stdout  # the environment wins over the file


def test_bad_value_in_toml_file_names_the_setting_and_file(tmp_path: Path):
    config = tmp_path / "tw.toml"
    config.write_text("[bus]\nmaxlen = -1\n")
    result = run_config({"TRADEWIND_CONFIG": str(config)})
    assert result.returncode == 2
    assert "bus.maxlen" in result.stderr and str(config) in result.stderr


def test_malformed_toml_file_is_a_clear_error(tmp_path: Path):
    config = tmp_path / "tw.toml"
    config.write_text("[bus\nmaxlen = 1\n")
    result = run_config({"TRADEWIND_CONFIG": str(config)})
    assert result.returncode == 2
    assert str(config) in result.stderr and "Traceback" not in result.stderr


def test_secrets_are_masked_everywhere(tmp_path: Path):
    secret = "hunter2-very-secret"
    env = {"DATABASE_URL": f"postgresql://bob:{secret}@db/x", "TRADEWIND_DASHBOARD__TOKEN": secret}
    result = run_config(env)
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    bad = run_config({**env, "TRADEWIND_BUS__MAXLEN": "x"})
    assert secret not in bad.stdout + bad.stderr
    settings = Settings(database_url=f"postgresql://bob:{secret}@db/x")
    assert secret not in repr(settings) and secret not in str(settings.redacted())
    assert settings.database_url is not None and settings.database_url.get_secret_value().endswith("@db/x")


def test_secret_files_are_read(tmp_path: Path):
    (tmp_path / "database_url").write_text("postgresql://from-file/db")
    code = "from shared.config import load_settings; print(load_settings().database_url.get_secret_value())"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run([sys.executable, "-c", code], env={**env, "TRADEWIND_SECRETS_DIR": str(tmp_path)},
                            capture_output=True, text=True)  # fmt: skip
    assert result.stdout.strip() == "postgresql://from-file/db", result.stderr


def test_unknown_env_detection_ignores_other_programs_variables():
    env = {"TRADEWIND_BUS__MAXLEN": "1", "TRADEWIND_CONFIG": "x", "PATH": "/bin", "TRADEWINDY": "1"}
    assert unknown_env_settings(env) == []
    assert unknown_env_settings({"TRADEWIND_BUSS__MAXLEN": "1"}) == ["TRADEWIND_BUSS__MAXLEN"]


def test_load_settings_raises_config_error_in_process():
    with pytest.raises(ConfigError, match=r"bus\.maxlen"):
        load_settings(bus={"maxlen": "many"})


def test_config_command_masks_every_url_secret() -> None:
    """`tradewind config` shows where each URL points, never its password or secret query values."""
    from click.testing import CliRunner

    from shared.cli import cli

    env = {
        "REDIS_URL": "redis://default:redis-pass-1@cache:6379/0",
        "DATABASE_URL": "postgresql://trader:pg-pass-2@db:5432/tw?sslpassword=ssl-pass-3&sslmode=require",
        "TRADEWIND_EXECUTOR__LIVE_VENUES__binance__URLS__private": "https://u:url-pass-4@fake:1/api?apiKey=url-key-5",
    }
    result = CliRunner().invoke(cli, ["config"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for secret in ("redis-pass-1", "pg-pass-2", "ssl-pass-3", "url-pass-4", "url-key-5"):
        assert secret not in result.output
    shown = json.loads(result.output)
    assert shown["redis_url"] == "redis://default:***@cache:6379/0"
    assert shown["database_url"] == "postgresql://trader:***@db:5432/tw?sslpassword=***&sslmode=require"
    assert shown["executor"]["live_venues"]["binance"]["urls"]["private"] == "https://u:***@fake:1/api?apiKey=***"
