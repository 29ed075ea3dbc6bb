"""The `tradewind` command. Platform commands live here; each service contributes its own
commands from ``services.<name>.cli``, loaded only when invoked (fast `--help`, and a service
that is not there simply has no commands)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import sys
import traceback
import zlib
from collections.abc import Iterator
from typing import Any, NoReturn

import click

from shared.cli_support import (
    NETWORK_TIMEOUT_S,
    CommandError,
    InputError,
    load_settings_or_exit,
    reaching,
    running_stack,
)

# command name -> "module:attribute" of a click command contributed by a service.
SERVICE_COMMANDS = {
    "normalize": "services.ingest.cli:normalize",
    "replay-server": "services.ingest.cli:replay_server",
    "capture": "services.ingest.cli:capture",
    "download": "services.ingest.download_cli:download",
    "train": "services.trainer.cli:train",
    "backtest": "services.trainer.cli:backtest",
    "synth": "services.trainer.cli:synth",
    "tune": "services.trainer.tune:tune",
    "policy": "services.trainer.policy_cli:policy",
    "arb": "services.executor.arbitrage.cli:arb",
    "status": "services.executor.cli:status",
    "halt": "services.risk.cli:halt",
    "resume": "services.risk.cli:resume",
    "risk": "services.risk.cli:risk",
}
# `tradewind <name>` runs services.<name>.service (`tradewind risk` is a group: no subcommand runs it).
SERVICE_RUNNERS = {
    "ingest": "Run the ingest service in the foreground (what compose and `tradewind up` run).",
    "trainer": "Run the trainer service in the foreground (what compose and `tradewind up` run).",
    "executor": "Run the executor service in the foreground (what compose and `tradewind up` run).",
    "dashboard": (
        "Serve the web dashboard (overview, strategies, risk with halt/resume, policies, bus); 127.0.0.1 by default."
    ),
    "alerts": (
        "Run the alerts service in the foreground: halts, crashes, hedges, stale feeds, unwinds, promotions"
        " to a webhook / Telegram."
    ),
}


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class TradewindGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [n for n, target in SERVICE_COMMANDS.items() if _module_exists(target.split(":")[0])]
        return sorted([*super().list_commands(ctx), *lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None or name not in SERVICE_COMMANDS:
            return command
        module, attr = SERVICE_COMMANDS[name].split(":")
        if not _module_exists(module):
            return None
        found = getattr(importlib.import_module(module), attr)
        return found if isinstance(found, click.Command) else None

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; end every expected failure in one line on stderr and its exit status.

        ``CommandError`` (``InputError`` 2, ``RuntimeFailure`` 1) and click's usage errors (2) print
        ``tradewind <command>: <message>``; a truncated compressed file is an input error; anything
        else is a bug: one line too, exit 1, and its traceback with --debug or TRADEWIND_DEBUG=1.
        """
        name = self._command_name(ctx, [*ctx._protected_args, *ctx.args])
        debug = bool(ctx.params.get("debug")) or os.environ.get("TRADEWIND_DEBUG", "") not in ("", "0")
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, KeyboardInterrupt, SystemExit):
            raise
        except click.UsageError as exc:
            where = " ".join(["tradewind", *exc.ctx.command_path.split()[1:]]) if exc.ctx is not None else name
            hint = f" (see `{where} --help`)" if exc.ctx is not None else ""
            _fail(where, exc.format_message() + hint, exc.exit_code, exc, debug)
        except CommandError as exc:
            _fail(name, exc.format_message(), exc.exit_code, exc, debug)
        except click.ClickException as exc:
            _fail(name, exc.format_message(), exc.exit_code, exc, debug)
        except (EOFError, zlib.error) as exc:  # click would take EOFError for Ctrl-D: "Aborted!"
            _fail(name, f"input ends early: a compressed file is truncated or corrupt ({exc or 'EOF'})", 2, exc, debug)
        except Exception as exc:
            _fail(name, f"unexpected error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", 1,
                  exc, debug)  # fmt: skip

    def _command_name(self, ctx: click.Context, words: list[str]) -> str:
        """``tradewind arb scan``: the command (and subcommand of a group) these arguments run."""
        path = ["tradewind"]  # whatever name the group was invoked under (tests: "cli")
        if words and not words[0].startswith("-"):
            path.append(words[0])
            command = self.get_command(ctx, words[0]) if words[0] in SERVICE_COMMANDS else None
            rest = [w for w in words[1:] if not w.startswith("-")]
            if isinstance(command, click.Group) and rest:
                path.append(rest[0])
        return " ".join(path)


def _fail(name: str, message: str, code: int, exc: BaseException, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    # One line: control characters from a file or a server never reach the terminal.
    line = " ".join(message.split()) if "\n" in message else message
    click.echo(f"{name}: {click.unstyle(_printable(line))}", err=True)
    sys.exit(code)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@click.group(cls=TradewindGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tradewind")
@click.option("--debug", is_flag=True, help="show the traceback of a failure (also TRADEWIND_DEBUG=1)")
def cli(debug: bool) -> None:
    """Tradewind: RL crypto trading on Redis streams. Paper trading unless you opt in to live.

    A failure ends in one line on stderr, `tradewind <command>: <what>: <where> (<why>)`, with exit
    status 2 for bad input, usage or settings and 1 for runtime failures (a server that does not
    answer, a port in use).
    """


@cli.command()
@click.option(
    "--mode",
    type=click.Choice(["replay", "synth", "paper", "live"]),
    default=None,
    help="replay: recorded data, paper orders (default); synth: a generated market (exchange `synth`) to learn,"
    " paper orders; paper: live data; live: real orders (gated)",
)
@click.option("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
@click.option("--only", multiple=True, metavar="SERVICE", help="start only these services (repeatable)")
@click.option(
    "--sample",
    type=click.Choice(["default", "day"]),
    default=None,
    help="replay mode: default (minutes of Binance/Coinbase) or day (24 h of Bitstamp BTC/USD, from the checkout)",
)
def up(mode: str | None, duration: float | None, only: tuple[str, ...], sample: str | None) -> None:
    """Start the whole stack as supervised processes; Ctrl-C stops it. Prints a JSON summary at the end."""
    from shared.logs import setup_logging
    from shared.stack import up as run_up

    overrides: dict[str, Any] = {"service_name": "up"}
    if mode:
        overrides["mode"] = mode
    with _environment("TRADEWIND_INGEST__REPLAY__SAMPLE", sample):  # the services inherit it, for this run only
        settings = load_settings_or_exit(**overrides)
        if settings.mode == "replay" and settings.ingest.replay.data is None and settings.ingest.replay.sample == "day":
            from shared.samples import SampleMissing, day_sample

            try:
                day_sample()
            except SampleMissing as exc:
                raise InputError(str(exc)) from None
        setup_logging(settings.log, "up")
        summary = asyncio.run(run_up(settings, duration, list(only) or None))
    click.echo(json.dumps(summary))
    supervised = {**summary["services"], **summary.get("servers", {})}
    failed = [n for n, s in supervised.items() if s["state"] == "gave_up"]
    sys.exit(1 if failed else 0)


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """``name=value`` in this process's environment while the block runs (nothing when ``value`` is None)."""
    if value is None:
        yield
        return
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@cli.command()
@click.option("--watch", is_flag=True, help="refresh until Ctrl-C")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.option("--interval", type=float, default=1.0, show_default=True, help="seconds between readings (rates)")
@click.option(
    "--lag-cap",
    type=int,
    default=10_000,
    show_default=True,
    help="count at most this many undelivered entries per group (Redis 6.2 has no lag field)",
)
def streams(watch: bool, as_json: bool, interval: float, lag_cap: int) -> None:
    """Per stream: length, rates, last entry age; per consumer group: consumers, pending, lag."""
    from rich.console import Console
    from rich.live import Live

    from shared import monitor
    from shared.bus import connect_redis

    settings = load_settings_or_exit()
    url = running_stack(settings).redis

    # Stream names are data: no emoji codes (":book:"), no markup; wide enough when piped.
    console = Console(emoji=False, markup=False, highlight=False, width=None if sys.stdout.isatty() else 200)

    async def run() -> None:
        redis = connect_redis(url, NETWORK_TIMEOUT_S, cluster=settings.bus.cluster)
        try:
            infos, at = await monitor.report(redis, interval, lag_cap=lag_cap)
            if not watch:
                if as_json:
                    click.echo(json.dumps(monitor.as_json(infos)))
                else:
                    console.print(monitor.render(infos))
                return
            with Live(monitor.render(infos), console=console, auto_refresh=False) as live:
                while True:
                    await asyncio.sleep(interval)
                    infos, at = await monitor.report(redis, interval, infos, at, lag_cap=lag_cap)
                    if as_json:
                        click.echo(json.dumps(monitor.as_json(infos)))
                    else:
                        live.update(monitor.render(infos), refresh=True)
        finally:
            await redis.aclose()

    try:
        with reaching("Redis", url):
            asyncio.run(run())
    except KeyboardInterrupt:
        pass


@cli.command("config")
def show_config() -> None:
    """Print the effective settings as JSON (secrets masked)."""
    click.echo(json.dumps(load_settings_or_exit().redacted(), indent=2))


@cli.command("keys")
def control_keys() -> None:
    """Generate risk:control's HMAC keys for this var dir unless set or already there (what `tradewind up`
    does): <var_dir>/secrets/tradewind_control, mode 0600, a secrets dir for TRADEWIND_SECRETS_DIR (compose)."""
    from shared.signing import key_file, stack_keys

    settings = load_settings_or_exit()
    stack_keys(settings.control, settings.var_dir)
    click.echo(key_file(settings.var_dir).parent)


def _service_command(name: str, help: str) -> click.Command:
    @click.command(name, help=help)
    def run_one() -> None:
        module = f"services.{name}.service"
        if not _module_exists(module):
            raise click.ClickException(f"the {name} service is not part of this version of Tradewind")
        from shared.runtime import run_service

        sys.exit(run_service(name, importlib.import_module(module).main))

    return run_one


for _name, _help in SERVICE_RUNNERS.items():
    cli.add_command(_service_command(_name, _help))


def main() -> None:
    cli(prog_name="tradewind")
