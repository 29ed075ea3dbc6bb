"""The CLI's shared plumbing: a bad setting exits 2 naming it; a command that needs the running stack
and finds none says where it looked and which variables would name it."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from shared.cli import cli
from shared.cli_support import load_settings_or_exit, running_stack
from shared.config import Settings

NO_SERVERS = {"REDIS_URL": None, "DATABASE_URL": None, "TRADEWIND_REDIS_URL": None, "TRADEWIND_DATABASE_URL": None}


def test_a_bad_setting_exits_2_naming_it():
    result = CliRunner().invoke(cli, ["config"], env={"TRADEWIND_BUS__MAXLEN": "lots"})
    assert result.exit_code == 2
    assert result.output.startswith("tradewind config: ") and "TRADEWIND_BUS__MAXLEN" in result.output


def test_load_settings_or_exit_takes_overrides():
    assert load_settings_or_exit(service_name="x").service_name == "x"


def test_no_running_stack_is_one_message(tmp_path: Path):
    with pytest.raises(click.ClickException) as raised:
        running_stack(Settings(var_dir=tmp_path), database=True)
    message = raised.value.message
    assert message.startswith("REDIS_URL and DATABASE_URL are not set and no running `tradewind up` was found")
    assert str(tmp_path / "run" / "redis.url") in message and str(tmp_path / "run" / "database.url") in message
    assert "TRADEWIND_VAR_DIR" in message


def test_a_server_not_needed_may_be_absent(tmp_path: Path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "database.url").write_text("postgresql://embedded/x")
    found = running_stack(Settings(var_dir=tmp_path), redis=False)
    assert found.redis_url is None and found.database == "postgresql://embedded/x"
    with pytest.raises(click.ClickException, match=r"^REDIS_URL is not set and no running"):
        found.redis  # noqa: B018


@pytest.mark.parametrize("argv", [["streams"], ["halt"], ["risk", "state"]])
def test_commands_that_need_redis_say_the_same(argv: list[str], tmp_path: Path):
    result = CliRunner().invoke(cli, argv, env={**NO_SERVERS, "TRADEWIND_VAR_DIR": str(tmp_path)})
    assert result.exit_code == 1, result.output
    assert "REDIS_URL is not set and no running `tradewind up` was found" in result.output
