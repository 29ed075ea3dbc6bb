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
    settings: Settings, redis_url: str, database_url: str | None, control: RiskControl, wait_s: float = 0.0
) -> dict[str, Any]:
    """Publish ``control``, signed with the operator key, on risk:control with its change to the durable
    halts, record it as a risk event (stream, and table if reachable); wait up to ``wait_s`` until every
    consumer group of risk:control handled it. Return the halts in force afterwards (``halts``) and the
    groups that confirmed it (``confirmed_by``), refused it (``refused_by``) or did not answer (``not_confirmed``).

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
    redis = connect_redis(redis_url, NETWORK_TIMEOUT_S, cluster=settings.bus.cluster)
    with reaching("PostgreSQL", database_url or ""):
        db = await Database.connect(database_url, settings.storage, NETWORK_TIMEOUT_S) if database_url else None
    try:
        if db is not None:
            await db.migrate()
        [change] = await Recorder(RedisBus(redis, settings.bus), db, signer).emit([event], [control])
        confirmed = await halts.confirmations(redis, change.entry_id, wait_s)
        return {"halts": halts.describe(await halts.load(redis, db)), **confirmed.as_dict()}
    finally:
        if db is not None:
            await db.close()
        await redis.aclose()


def _kill_switch(action: str, reason: str, exchange: str | None, wait_s: float, force: bool = False) -> None:
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
            sent = asyncio.run(send_control(settings, url, found.database_url, control, wait_s))
    except SigningError as exc:
        raise InputError(str(exc)) from None
    out = {"action": action, "exchange": exchange, "reason": reason, "force": force, "ts": control.ts}
    click.echo(json.dumps({**out, **sent}))
    for group, why in sent["refused_by"].items():
        click.echo(f"REFUSED by consumer group {group} of {streams.RISK_CONTROL}: {why}; not in force there", err=True)
    for group in sent["not_confirmed"]:
        click.echo(
            f"not confirmed within {wait_s:g}s by consumer group {group} of {streams.RISK_CONTROL}: its services may "
            "be down or stalled; the halt set is durable, so they apply it when they start",
            err=True,
        )
    if action == "resume":
        for h in sent["halts"]:
            if exchange is None or h["exchange"] in (None, exchange):
                how = "needs --force --reason TEXT" if h["cause"] in FORCED else "lifts when its cause is gone"
                click.echo(f"still halted: {h['id']} ({h['reason']}); {how}", err=True)


WAIT = click.option(
    "--wait-s",
    type=click.FloatRange(0),
    default=5.0,
    show_default=True,
    help="wait this long for the running executors and risk service to confirm it (0: do not wait)",
)


@click.command()
@click.option("--reason", default="manual halt", show_default=True, help="why; recorded with the event")
@click.option("--exchange", default=None, metavar="EX", help="halt only this venue (default: every venue)")
@WAIT
def halt(reason: str, exchange: str | None, wait_s: float) -> None:
    """Kill switch: stop new orders now (every venue, or one) and cancel resting ones; prints JSON.

    Returns once every running executor has the halt in force and has finished placing the orders it
    had checked before it (``confirmed_by``), or after --wait-s naming who did not (``not_confirmed``).
    The halt is durable: executors and the risk service restarted later start halted."""
    _kill_switch("halt", reason, exchange, wait_s)


@click.command()
@click.option("--reason", default=None, help="why; recorded with the event (required with --force)")
@click.option("--exchange", default=None, metavar="EX", help="resume only this venue (default: every venue)")
@click.option("--force", is_flag=True, help="also lift a drawdown or reconciliation halt: you accept the loss")
@WAIT
def resume(reason: str | None, exchange: str | None, force: bool, wait_s: float) -> None:
    """Lift human halts (every venue, or one); prints JSON with the halts still in force.

    A drawdown halt is lifted only with --force --reason TEXT; a halt for a broken feed only when the
    feed recovers."""
    if force and not reason:
        raise click.UsageError("--force needs --reason TEXT: why the halt may be lifted is recorded")
    _kill_switch("resume", reason or "manual resume", exchange, wait_s, force)


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
    type=click.Path(exists=True, path_type=Path),
    required=True,
    multiple=True,
    help="normalized JSON lines (`tradewind normalize` output), a raw capture (file or folder, as for "
    "`replay-server`) or 1-minute bars (CSV timestamp,open,high,low,close,volume; interpolated inside each "
    "bar), .gz allowed; repeat to merge several by time",
)
@click.option(
    "--exchange", default=None, metavar="EX", help="venue of a raw capture whose names and frames don't say, or of bars"
)
@click.option(
    "--scope",
    type=click.Choice(["venue", "market"]),
    default="venue",
    show_default=True,
    help="venue: only --venue crashes (the others stay calm); market: every venue of the asset crashes together",
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
@click.option(
    "--with-strategies",
    "with_strategies",
    default=None,
    is_flag=False,
    flag_value="momentum",
    metavar="LIST",
    help="trade in the loop: a comma list of momentum, rl (needs --policy), arbitrage (reports whether the "
    "data holds a cycle; trades none); alone: momentum. Their orders pass the same guard: a crash blocks buys",
)
@click.option(
    "--policy",
    "policy",
    default=None,
    metavar="PATH",
    help="the rl strategy's policy: a `tradewind train --out` directory (or its actor.npz), optionally "
    "PATH#sha256=HEX to check its bytes",
)
@click.option(
    "--spot-quote",
    type=click.FloatRange(0, 1),
    default=None,
    help="share of the value held as spot quote, for the strategies and margin top-ups (default: 0.1 with "
    "--with-strategies, else 0)",
)
@click.option("--json", "as_json", is_flag=True, help="print the full report as JSON")
def simulate(
    data: tuple[Path, ...],
    exchange: str | None,
    scope: str,
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
    with_strategies: str | None,
    policy: str | None,
    spot_quote: float | None,
    as_json: bool,
) -> None:
    """Replay recorded data with an injected flash crash through the detector and hedger."""
    from services.risk.replay import DataError
    from services.risk.sim_strategies import factory
    from services.risk.simulate import SimConfig, run_messages
    from services.risk.sources import load_sources

    settings = load_settings_or_exit()
    sim = settings.risk.simulation.model_copy(
        update={
            k: v for k, v in {"initial_value": initial_value, "base_fraction": base_fraction}.items() if v is not None
        }
    )
    risk_settings = settings.risk.model_copy(update={"simulation": sim})
    names = _strategy_names(with_strategies, policy)
    quote_share = spot_quote if spot_quote is not None else (0.1 if names else 0.0)
    config = SimConfig(
        depth,
        crash_seconds,
        recover_seconds,
        crash_at,
        venue,
        symbol,
        not no_hedge,
        margin_venues,
        scope=scope,  # type: ignore[arg-type]
        spot_quote=quote_share,
    )
    try:
        strategies = factory(names, settings.executor, policy) if names else None
        report = run_messages(load_sources(data, exchange), risk_settings, config, settings.executor.venues, strategies)
    except (DataError, ValueError) as exc:  # a PolicyError is a ValueError
        raise InputError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report))
        return
    for key in (
        "venue",
        "symbol",
        "crash_depth",
        "scope",
        "hedge",
        "detected",
        "max_drawdown",
        "final_pnl",
        "detect_latency_ms",
        "detection_latency_ms",
        "hedge_size",
        "hedge_notional",
        "interest_paid",
        "fees_paid",
        "liquidations",
        "margin_top_ups",
        "strategy_orders",
        "false_alarms",
        "hedge_left",
    ):
        click.echo(f"{key:22} {_fmt(report[key])}")
    for name, figures in report["per_strategy"].items():
        if "note" in figures:
            click.echo(f"{name}: {figures['note']}")
        else:
            said = ", ".join(f"{k} {_fmt(figures[k])}" for k in ("orders", "rejected", "fills", "fees", "pnl"))
            click.echo(f"{name}: {said}")


def _strategy_names(listed: str | None, policy: str | None) -> list[str]:
    """The strategies ``--with-strategies`` names, checked against what exists and ``--policy``."""
    from services.risk.sim_strategies import NAMES

    names = list(dict.fromkeys(n.strip() for n in (listed or "").split(",") if n.strip()))
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise click.UsageError(f"--with-strategies: unknown {', '.join(unknown)}; expected some of {', '.join(NAMES)}")
    if "rl" in names and not policy:
        raise click.UsageError("--with-strategies rl needs --policy PATH (a `tradewind train --out` directory)")
    if policy and "rl" not in names:
        raise click.UsageError("--policy is the rl strategy's: add rl to --with-strategies")
    return names


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


@risk.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def state(as_json: bool) -> None:
    """The running risk service's state: halts, crashes, hedges, exposure, PnL, margin levels."""
    from shared.bus import connect_redis

    settings = load_settings_or_exit()
    url = running_stack(settings).redis

    async def read() -> bytes | str | None:
        redis = connect_redis(url, NETWORK_TIMEOUT_S, cluster=settings.bus.cluster)
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
