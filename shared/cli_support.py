"""What every `tradewind` command shares: its settings or a clear exit, the running stack's URLs, the
error types a command raises, and the deadline of every network call a command makes.

Commands in ``shared.cli`` and in each ``services.<name>.cli`` use these, so a bad setting, a bad
file or a server that does not answer reads the same whichever command met it: one line
``tradewind <command>: <what>: <where> (<why>)`` on stderr, exit status 2 for input, usage and
configuration errors, 1 for runtime failures (shared.cli's handler prints it).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import click

from shared.config import ConfigError, Settings, load_settings
from shared.runtime import missing_urls, running_url

# Every network call of a CLI command gives up after this long (connect, and each command sent).
NETWORK_TIMEOUT_S = 5.0


class CommandError(click.ClickException):
    """An expected failure of a command: shared.cli prints ``tradewind <command>: <message>``, exits ``exit_code``."""


class InputError(CommandError):
    """Bad input: a file, a flag value, a setting (exit status 2). Say what, where, and what was expected."""

    exit_code = 2


class RuntimeFailure(CommandError):
    """The input was fine but the world was not: a server unreachable, a port taken (exit status 1)."""

    exit_code = 1


def endpoint(url: str) -> str:
    """``host:port`` of a server URL, never its password (what an error message may show)."""
    parts = urlsplit(url)
    host = parts.hostname or url
    default = {"redis": 6379, "rediss": 6380, "postgresql": 5432, "postgres": 5432}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def unreachable(kind: str, url: str, exc: BaseException) -> RuntimeFailure:
    """The one message for "a server did not answer": what, where (host:port), why."""
    why = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        why = f"no answer within {NETWORK_TIMEOUT_S:g} s"
    return RuntimeFailure(f"cannot reach {kind} at {endpoint(url)} ({why})")


@contextlib.contextmanager
def reaching(kind: str, url: str) -> Iterator[None]:
    """Turn connection errors and timeouts of ``kind`` (Redis, PostgreSQL) at ``url`` into `unreachable`."""
    from asyncpg import PostgresError
    from asyncpg.exceptions import InterfaceError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeout

    from shared.storage.db import StorageUnavailable

    try:
        yield
    except (OSError, TimeoutError, RedisConnectionError, RedisTimeout, InterfaceError, StorageUnavailable) as exc:
        raise unreachable(kind, url, exc) from exc
    except PostgresError as exc:
        raise RuntimeFailure(f"{kind} at {endpoint(url)} refused: {exc}") from exc


def load_settings_or_exit(**overrides: Any) -> Settings:
    """The settings, or the setting that is wrong on stderr and exit status 2 (`InputError`)."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise InputError(str(exc)) from None


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
            raise RuntimeFailure(missing_urls(self.settings, ["redis"], looked_for_stack=True))
        return self.redis_url

    @property
    def database(self) -> str:
        """The PostgreSQL URL; a command that cannot work without one fails here with the one message."""
        if self.database_url is None:
            raise RuntimeFailure(missing_urls(self.settings, ["database"], looked_for_stack=True))
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
        raise RuntimeFailure(missing_urls(settings, missing, looked_for_stack=True))
    return found


@contextlib.contextmanager
def progress_bar(length: int, label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (stdout stays for the one JSON line); yields ``progress(done, total)``."""
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        shown = 0

        def progress(done: int, total: int) -> None:
            nonlocal shown
            bar.update(done - shown)
            shown = done

        yield progress
