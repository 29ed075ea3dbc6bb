"""`tradewind train --data DIR | --market M --market M ...` and `tradewind backtest --data DIR`: one portfolio
policy over several markets (a directory of CSVs, or bars built from the `trades` table)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from services.trainer.data import DataError
from services.trainer.market_dir import load_market_dir, load_market_funding, load_markets_from_db, parse_market
from shared.cli_support import InputError, RuntimeFailure, progress_bar
from shared.rl.bars import Bars
from shared.rl.portfolio import Market, is_perpetual


def train_dir(
    algo: str,
    data_path: str,
    out_dir: str | None,
    timesteps: int,
    seed: int,
    gpus: float,
    config_path: str | None,
    overrides: tuple[str, ...],
    address: str | None,
    policy_dir: str,
    env_runners: int | None = None,
) -> None:
    """Train one portfolio policy over the markets of DIR; print ONE JSON line of metrics."""
    try:
        markets, bars = load_market_dir(data_path)
    except DataError as exc:
        raise InputError(str(exc)) from None
    out = out_dir or str(Path(policy_dir) / f"{algo}-{Path(data_path).resolve().name}-s{seed}")
    train_markets(
        algo, markets, bars, str(data_path), out, timesteps, seed, gpus, config_path, overrides, address, env_runners
    )


def bars_from_database(
    settings: Any, specs: tuple[str, ...], bar_seconds: float, since: datetime | None, until: datetime | None
) -> tuple[list[Market], list[Bars]]:
    """The bars of every `--market EXCHANGE:BASE/QUOTE` from the `trades` table over [since, until),
    aligned by time; InputError naming a market without trades there, RuntimeFailure when the
    database cannot be reached."""
    from shared.cli_support import NETWORK_TIMEOUT_S, reaching, running_stack
    from shared.storage import Database

    try:
        markets = [parse_market(spec) for spec in specs]
    except DataError as exc:
        raise InputError(str(exc)) from None
    if len(set(markets)) != len(markets):
        raise InputError(f"--market: each market once, found {', '.join(specs)}")
    window = [None if t is None else t.replace(tzinfo=t.tzinfo or UTC) for t in (since, until)]
    url = running_stack(settings, redis=False, database=True).database

    async def load() -> list[Bars]:
        with reaching("PostgreSQL", url):
            db = await Database.connect(url, settings.storage, NETWORK_TIMEOUT_S)
        try:
            return await load_markets_from_db(db, markets, bar_seconds, *window)
        finally:
            await db.close()

    try:
        return markets, asyncio.run(load())
    except DataError as exc:
        raise InputError(str(exc)) from None


def train_markets(
    algo: str,
    markets: list[Market],
    bars: list[Bars],
    data_label: str,
    out_dir: str,
    timesteps: int,
    seed: int,
    gpus: float,
    config_path: str | None,
    overrides: tuple[str, ...],
    address: str | None,
    env_runners: int | None = None,
) -> None:
    """Train one portfolio policy over `markets` (aligned `bars`); print ONE JSON line of metrics.

    Recorded funding comes from a directory's funding files; elsewhere (the trades table) every
    perpetual pays the stated constant `portfolio.funding_rate_8h`, and the JSON's `funding` says so."""
    from services.trainer.config_check import check_config
    from services.trainer.portfolio_training import portfolio_config_from, train_portfolio
    from services.trainer.training import RayUnavailable, TrainingError, load_config, ray_session

    try:
        config = load_config(algo, config_path, overrides)
        check_config(algo, {k: v for k, v in config.items() if k != "portfolio"})
        pcfg = portfolio_config_from(config, algo)
        source = Path(data_label)
        if source.is_dir():
            funding, sources = load_market_funding(source, markets, bars, pcfg.funding_rate_8h)
        else:
            funding = {}
            sources = {
                f"{ex}:{sym}": f"constant {pcfg.funding_rate_8h:g} per 8h (no recorded funding in {data_label})"
                for ex, sym in markets
                if is_perpetual(ex)
            }
    except (DataError, TrainingError) as exc:
        raise InputError(str(exc)) from None
    out = Path(out_dir)
    with contextlib.ExitStack() as stack:
        try:
            with contextlib.redirect_stdout(sys.stderr):
                where = stack.enter_context(ray_session(address=address))
        except RayUnavailable as exc:
            raise RuntimeFailure(str(exc)) from None
        with progress_bar(timesteps, f"training {algo} portfolio") as progress:
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    result = train_portfolio(
                        bars,
                        markets,
                        algo,
                        out,
                        timesteps,
                        seed,
                        gpus,
                        config,
                        data_label,
                        progress,
                        funding=funding,
                        funding_sources=sources,
                        env_runners=env_runners,
                    )
            except (TrainingError, ValueError) as exc:
                raise InputError(str(exc)) from None
    click.echo(json.dumps({**where, **result.metrics}))  # the run's ray_nodes, not the cluster's


def backtest_dir(data_path: str, policy_spec: str, as_json: bool, policy_dir: str, settings: Any) -> None:
    """Out-of-sample backtest of a portfolio policy (or `baseline:NAME`) on the markets of DIR."""
    from services.trainer.portfolio_eval import evaluate
    from shared.rl.costs import CostModel, FeeTier
    from shared.rl.features import WARMUP
    from shared.rl.policy import PolicyError
    from shared.rl.portfolio import PortfolioConfig, PortfolioPolicy, build_portfolio_data, load_portfolio_policy

    try:
        markets, bars = load_market_dir(data_path)
        policy: PortfolioPolicy | str
        if policy_spec.startswith("baseline:"):
            policy = policy_spec
            t = settings.trainer
            cost = CostModel(
                tiers=(FeeTier(0.0, t.fee_taker, t.fee_taker),), half_spread=t.half_spread, impact=t.impact
            )
            config = PortfolioConfig(cost=cost)
            options: dict[str, Any] = {"time_features": "none"}
        else:
            policy = load_portfolio_policy(policy_spec, policy_dir)
            config, options = policy.config, policy.feature_options
            if policy.markets != markets:
                raise PolicyError(f"{policy_spec}: trained on markets {policy.markets}, {data_path} holds {markets}")
        funding, sources = load_market_funding(data_path, markets, bars, config.funding_rate_8h)
        data = build_portfolio_data(
            bars,
            markets,
            time_features=str(options.get("time_features", "day")),
            lags=config.lags,
            funding_rate_8h=config.funding_rate_8h,
            funding=funding,
        )
    except (DataError, PolicyError, ValueError) as exc:
        raise InputError(str(exc)) from None
    start = min(WARMUP + max(config.lags, default=0), len(data) // 4)
    if isinstance(policy, PortfolioPolicy):
        trained_to = int(policy.meta["validation_to_ns"])
        if data.ts[0] <= trained_to:  # only bars after what it was trained and selected on
            start = max(start, int(data.ts.searchsorted(trained_to, side="right")))
    stop = len(data) - 1
    if stop - start < 30:
        raise InputError(f"{data_path}: {max(stop - start, 0)} out-of-sample bars; a backtest needs at least 30")
    try:
        report = evaluate(policy, data, start, stop, config)
    except ValueError as exc:
        raise InputError(f"{data_path}: {exc}") from None
    report["funding"] = sources  # per perpetual: recorded file or the stated constant
    if as_json:
        click.echo(json.dumps(report))
        return
    keys = ("total_return", "sharpe", "max_drawdown", "turnover", "trades", "fees")
    click.echo(f"{report['policy']} on {', '.join(report['markets'])}: out-of-sample, after costs")
    for name, m in {"policy": report, **report["baselines"]}.items():
        click.echo(f"  {name:20s} " + "  ".join(f"{k}={m[k]:.4g}" for k in keys))
    for market, source in sources.items():
        click.echo(f"  funding {market}: {source}")
