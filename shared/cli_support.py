"""What every `tradewind` command shares: its settings or a clear exit, and the running stack's URLs.

Commands in ``shared.cli`` and in each ``services.<name>.cli`` use these, so a bad setting or a
stack that is not running reads the same whichever command met it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import click

from shared.config import ConfigError, Settings, load_settings
from shared.runtime import missing_urls, running_url


def load_settings_or_exit(**overrides: Any) -> Settings:
    """The settings, or the setting that is wrong on stderr and exit status 2."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        click.echo(f"tradewind: {exc}", err=True)
        sys.exit(2)


@dataclass(frozen=True)
class RunningStack:
    """The URLs of the servers a command talks to: the configured ones, else a running `tradewind up`'s."""

    redis_url: str | None
    database_url: str | None
    settings: Settings = field(repr=False)

    @property
    def redis(self) -> str:
        """The Redis URL; a command that cannot work without one fails here with the one message."""
        if self.redis_url is None:
            raise click.ClickException(missing_urls(self.settings, ["redis"], looked_for_stack=True))
        return self.redis_url

    @property
    def database(self) -> str:
        """The PostgreSQL URL; a command that cannot work without one fails here with the one message."""
        if self.database_url is None:
            raise click.ClickException(missing_urls(self.settings, ["database"], looked_for_stack=True))
        return self.database_url


def running_stack(settings: Settings, *, redis: bool = True, database: bool = False) -> RunningStack:
    """Find the servers; fail (exit status 1) naming every URL a command needs and did not find.

    ``redis`` / ``database``: whether the command needs that server; one it does not need may still
    be found (``RunningStack.database_url`` is then a str or None).
    """
    found = RunningStack(running_url(settings, "redis"), running_url(settings, "database"), settings)
    need = (("redis", redis, found.redis_url), ("database", database, found.database_url))
    missing = [kind for kind, needed, url in need if needed and url is None]
    if missing:
        raise click.ClickException(missing_urls(settings, missing, looked_for_stack=True))
    return found
