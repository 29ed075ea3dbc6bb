"""Risk commands: `tradewind halt` / `resume` (the kill switch), `tradewind risk simulate|state`."""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import click

from shared.cli_support import (
    NETWORK_TIMEOUT_S,
    InputError,
    RuntimeFailure,
    load_settings_or_exit,
    reaching,
    running_stack,
)
from shared.config import Settings
from shared.schemas import RiskControl, RiskEvent, streams


async def send_control(
    settings: Settings, redis_url: str, database_url: str | None, control: RiskControl
) -> list[dict[str, Any]]:
    """Publish ``control``, signed with the operator key, on risk:control with its change to the durable
    halts, record it as a risk event (stream, and table if reachable); return the halts in force afterwards.

    The operator key is ``control.operator_key``, else that of the `tradewind up` running on the var dir."""
    from services.risk.record import Recorder
    from shared import halts
    from shared.bus import RedisBus, connect_redis
    from shared.signing import OPERATOR, Signer, with_stack_keys
    from shared.storage import Database

    signer = Signer.of(with_stack_keys(settings.control, settings.var_dir), OPERATOR)

    event = RiskEvent(
        control.action,
        control.ts,
        "critical" if control.action == "halt" else ("warning" if control.force else "info"),
        control.exchange,
        None,
        {"reason": control.reason, "issued_by": control.issued_by, "cause": control.cause, "force": control.force},
    )
    redis = connect_redis(redis_url, NETWORK_TIMEOUT_S)
    with reaching("PostgreSQL", database_url or ""):
        db = await Database.connect(database_url, settings.storage, NETWORK_TIMEOUT_S) if database_url else None
    try:
        if db is not None:
            await db.migrate()
        await Recorder(RedisBus(redis, settings.bus), db, signer).emit([event], [control])
        return halts.describe(await halts.load(redis, db))
    finally:
        if db is not None:
            await db.close()
        await redis.aclose()


def _kill_switch(action: str, reason: str, exchange: str | None, force: bool = False) -> None:
    from shared.halts import FORCED, HUMAN

    settings = load_settings_or_exit()
    found = running_stack(settings)
    url = found.redis
    control = RiskControl(
        action,  # type: ignore[arg-type]
        time.time_ns(),
        reason=reason,
        exchange=exchange,
        issued_by=f"cli:{getpass.getuser()}@{socket.gethostname()}",
        cause=HUMAN,
        force=force,
    )
    from shared.signing import SigningError

    try:
        with reaching("Redis", url):  # PostgreSQL's failures are named inside, before Redis is used
            remaining = asyncio.run(send_control(settings, url, found.database_url, control))
    except SigningError as exc:
        raise InputError(str(exc)) from None
    out = {"action": action, "exchange": exchange, "reason": reason, "force": force, "ts": control.ts}
    click.echo(json.dumps({**out, "halts": remaining}))
    if action == "resume":
        for h in remaining:
            if exchange is None or h["exchange"] in (None, exchange):
                how = "needs --force --reason TEXT" if h["cause"] in FORCED else "lifts when its cause is gone"
                click.echo(f"still halted: {h['id']} ({h['reason']}); {how}", err=True)


@click.command()
@click.option("--reason", default="manual halt", show_default=True, help="why; recorded with the event")
@click.option("--exchange", default=None, metavar="EX", help="halt only this venue (default: every venue)")
def halt(reason: str, exchange: str | None) -> None:
    """Kill switch: stop new orders now (every venue, or one) and cancel resting ones; prints JSON.

    The halt is durable: executors and the risk service restarted later start halted."""
    _kill_switch("halt", reason, exchange)


@click.command()
@click.option("--reason", default=None, help="why; recorded with the event (required with --force)")
@click.option("--exchange", default=None, metavar="EX", help="resume only this venue (default: every venue)")
@click.option("--force", is_flag=True, help="also lift a drawdown or reconciliation halt: you accept the loss")
def resume(reason: str | None, exchange: str | None, force: bool) -> None:
    """Lift human halts (every venue, or one); prints JSON with the halts still in force.

    A drawdown halt is lifted only with --force --reason TEXT; a halt for a broken feed only when the
    feed recovers."""
    if force and not reason:
        raise click.UsageError("--force needs --reason TEXT: why the halt may be lifted is recorded")
    _kill_switch("resume", reason or "manual resume", exchange, force)


@click.group(invoke_without_command=True)
@click.pass_context
def risk(ctx: click.Context) -> None:
    """Run the risk service (no subcommand), or a risk tool: crash simulation, live risk state."""
    if ctx.invoked_subcommand is None:
        from services.risk.service import main
        from shared.runtime import run_service

        sys.exit(run_service("risk", main))


@risk.command()
@click.option(
    "--data",
    "data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="normalized JSON lines (`tradewind normalize` output), .gz allowed",
)
@click.option(
    "--crash",
    "depth",
    type=click.FloatRange(0, 0.99),
    default=0.3,
    show_default=True,
    help="price fall as a fraction (0: inject none)",
)
@click.option("--crash-seconds", type=click.FloatRange(min=0.01), default=5.0, show_default=True)
@click.option("--recover-seconds", type=click.FloatRange(min=0.01), default=60.0, show_default=True)
@click.option(
    "--crash-at",
    type=click.FloatRange(min=0),
    default=120.0,
    show_default=True,
    help="seconds after the venue's first message",
)
@click.option("--venue", default=None, help="venue that holds the inventory and crashes (default: the first)")
@click.option("--symbol", default=None, help="market (default: the venue's first)")
@click.option(
    "--margin-venue",
    "margin_venues",
    multiple=True,
    help="venues with a margin account for hedging (default: the crashing venue)",
)
@click.option(
    "--initial-value",
    type=click.FloatRange(min=0.01),
    default=None,
    help="portfolio value in quote (default: risk.simulation.initial_value)",
)
@click.option(
    "--base-fraction",
    type=click.FloatRange(0, 1),
    default=None,
    help="share held as spot base (default: risk.simulation.base_fraction, 0.5)",
)
@click.option("--no-hedge", is_flag=True, help="detect only; do not hedge")
@click.option("--json", "as_json", is_flag=True, help="print the full report as JSON")
def simulate(
    data: Path,
    depth: float,
    crash_seconds: float,
    recover_seconds: float,
    crash_at: float,
    venue: str | None,
    symbol: str | None,
    margin_venues: tuple[str, ...],
    initial_value: float | None,
    base_fraction: float | None,
    no_hedge: bool,
    as_json: bool,
) -> None:
    """Replay recorded data with an injected flash crash through the detector and hedger."""
    from services.risk.replay import DataError
    from services.risk.simulate import SimConfig
    from services.risk.simulate import simulate as run_simulation

    settings = load_settings_or_exit()
    sim = settings.risk.simulation.model_copy(
        update={
            k: v for k, v in {"initial_value": initial_value, "base_fraction": base_fraction}.items() if v is not None
        }
    )
    risk_settings = settings.risk.model_copy(update={"simulation": sim})
    config = SimConfig(depth, crash_seconds, recover_seconds, crash_at, venue, symbol, not no_hedge, margin_venues)
    try:
        report = run_simulation(data, risk_settings, config, settings.executor.venues)
    except DataError as exc:
        raise InputError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report))
        return
    for key in (
        "venue",
        "symbol",
        "crash_depth",
        "hedge",
        "max_drawdown",
        "final_pnl",
        "detect_latency_ms",
        "detection_latency_ms",
        "hedge_size",
        "hedge_notional",
        "interest_paid",
        "fees_paid",
        "liquidations",
        "false_alarms",
        "hedge_left",
    ):
        click.echo(f"{key:22} {_fmt(report[key])}")


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


@risk.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def state(as_json: bool) -> None:
    """The running risk service's state: halts, crashes, hedges, exposure, PnL, margin levels."""
    from shared.bus import connect_redis

    url = running_stack(load_settings_or_exit()).redis

    async def read() -> bytes | str | None:
        redis = connect_redis(url, NETWORK_TIMEOUT_S)
        try:
            return await redis.get(streams.RISK_STATE)
        finally:
            await redis.aclose()

    with reaching("Redis", url):
        raw = asyncio.run(read())
    if raw is None:
        raise RuntimeFailure("the risk service has not published its state (is it running?)")
    doc = json.loads(raw)
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(
        f"halted: {doc['halted'] or 'no'}   equity: {doc['equity']:.2f}   drawdown: "
        f"{doc['drawdown_intraday']:.2%} today, {doc['drawdown_total']:.2%} total"
    )
    click.echo(f"crashes: {doc['crashes'] or 'none'}   hedges: {doc['hedges'] or 'none'}")
    for venue, v in doc["venues"].items():
        level = f"{v['margin_level']:.2f}" if v["margin_level"] else "-"
        click.echo(
            f"  {venue:16} equity {v['equity']:>12.2f}  gross {v['gross_exposure']:>10.2f}"
            f"  net {v['net_exposure']:>10.2f}  rPnL {v['realized_pnl']:>9.2f}"
            f"  uPnL {v['unrealized_pnl']:>9.2f}  margin {level:>5}  {v['halted'] or ''}"
        )
