"""`tradewind train`, `tradewind backtest` and `tradewind synth`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from services.trainer.data import DataError, load_bars
from shared.cli_support import NETWORK_TIMEOUT_S, InputError, RuntimeFailure, progress_bar, reaching

METRIC_ROWS = ("total_return", "sharpe", "sortino", "max_drawdown", "turnover", "trades", "fees", "exposure")
# A backtest needs this many out-of-sample bars: fewer give a Sharpe ratio that means nothing.
MIN_BACKTEST_BARS = 30
MIN_SYNTH_BARS = 5 * MIN_BACKTEST_BARS


def _fail(message: str) -> NoReturn:
    raise InputError(message)


def _folds_at_least_2(ctx: click.Context, param: click.Parameter, value: int | None) -> int:
    if value is not None and value < 2:
        raise click.BadParameter(f"expected at least 2 folds (walk-forward), found {value}")
    return value or 0


@click.command()
@click.option("--algo", type=click.Choice(["dqn", "ppo", "appo"]), required=True, help="RLlib algorithm")
@click.option(
    "--data",
    "data_path",
    type=click.Path(),
    default=None,
    help="candles (CSV, Binance klines, freqtrade JSON/feather, parquet) or trades; or a DIR of "
    "<exchange>__<BASE>-<QUOTE>.csv files (same timestamps): one portfolio policy over all of them; "
    "a perpetual's <exchange>__<BASE>-<QUOTE>.funding.csv (date,rate per 8h) gives its recorded funding, "
    "else it pays [portfolio] funding_rate_8h (the JSON's `funding` says which)",
)
@click.option("--timesteps", type=click.IntRange(min=1), default=50_000, show_default=True, help="env steps to sample")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="checkpoint directory (default: <policy_dir>/<algo>-<data stem>-s<seed>)",
)
@click.option("--gpus", type=float, default=None, help="GPUs per learner (num_gpus_per_learner); default CPU")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file overriding configs/<algo>.toml section by section",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="override one setting, e.g. --set training.lr=1e-4 --set env.reward=dsr",
)
@click.option(
    "--market",
    "markets",
    multiple=True,
    metavar="EXCHANGE:BASE/QUOTE",
    help="instead of --data: bars from the trades table (DATABASE_URL or a running stack); repeat it for a "
    "portfolio policy over several markets, aligned by time",
)
@click.option("--since", type=click.DateTime(), default=None, help="with --market: first trade time (UTC)")
@click.option("--until", type=click.DateTime(), default=None, help="with --market: trades before this time (UTC)")
@click.option(
    "--bar-seconds", type=float, default=60.0, show_default=True, help="bar length when the data holds trades"
)
@click.option(
    "--folds",
    type=int,
    default=None,
    callback=_folds_at_least_2,
    help="walk-forward: retrain K ≥ 2 times on an expanding window, judged on the next fold",
)
@click.option(
    "--address",
    default=None,
    metavar="HOST:PORT",
    help="Ray cluster to train on (default: RAY_ADDRESS, else a local Ray started for this run)",
)
@click.option(
    "--env-runners",
    type=click.IntRange(min=1),
    default=None,
    help="remote env runners (on a cluster of several nodes: spread over them; default one per node)",
)
def train(
    algo: str,
    data_path: str | None,
    markets: tuple[str, ...],
    since: Any,
    until: Any,
    timesteps: int,
    seed: int,
    out_dir: str | None,
    gpus: float | None,
    config_path: str | None,
    overrides: tuple[str, ...],
    bar_seconds: float,
    folds: int,
    address: str | None,
    env_runners: int | None,
) -> None:
    """Train a policy offline; write a checkpoint dir and print ONE JSON line of metrics.

    The data is split by time into train / validation / test ([split] in the config); the
    metrics line reports validation and test results beside the baselines, and where it ran
    (`ray_address`; `ray_nodes`: the nodes its env runners ran on). Training starts its own local
    Ray unless --address or RAY_ADDRESS names a cluster; one that does not answer within seconds is
    an error (exit 1); on one of several nodes the env runners are spread over them. Progress goes
    to stderr. Nothing is left in --out when the run fails. Only weights-only `actor.npz` files are loaded
    elsewhere; an RLlib checkpoint (fine-tuning) is executable code: unpickle only ones you trained.
    """
    from services.trainer.config_check import check_config
    from services.trainer.training import RayUnavailable, TrainingError, load_config, ray_session
    from shared.cli_support import load_settings_or_exit

    settings = load_settings_or_exit()
    if (data_path is None) == (not markets):
        _fail("expected --data PATH or --market EXCHANGE:BASE/QUOTE (repeatable), exactly one of them")
    if folds and (len(markets) > 1 or (data_path is not None and Path(data_path).is_dir())):
        _fail(
            f"--folds {folds}: walk-forward trains single-market policies only; for a portfolio run "
            "`python -m services.trainer.portfolio_walkforward run DIR --folds K`"
        )
    db_bars = None
    if markets:  # bars from the trades table
        from services.trainer.portfolio_cli import bars_from_database, train_markets

        found, db_bars = bars_from_database(settings, markets, bar_seconds, since, until)
        data_path = "trades:" + "+".join(f"{e}:{s}" for e, s in found)
        stem = "-".join(e for e, _ in found) + f"-{found[0][1].replace('/', '-')}"
        out_dir = out_dir or str(Path(settings.trainer.policy_dir) / f"{algo}-{stem}-s{seed}")
        if len(found) > 1:
            gpus = settings.trainer.gpus if gpus is None else gpus
            train_markets(
                algo,
                found,
                db_bars,
                data_path,
                out_dir,
                timesteps,
                seed,
                gpus,
                config_path,
                overrides,
                address,
                env_runners,
            )
            return
    assert data_path is not None
    if Path(data_path).is_dir():  # one portfolio policy over every market in the directory
        from services.trainer.portfolio_cli import train_dir

        gpus = settings.trainer.gpus if gpus is None else gpus
        policy_dir = settings.trainer.policy_dir
        train_dir(
            algo, data_path, out_dir, timesteps, seed, gpus, config_path, overrides, address, policy_dir, env_runners
        )
        return
    try:
        bars = db_bars[0] if db_bars else load_bars(data_path, bar_seconds)
        config = load_config(algo, config_path, overrides)
        check_config(algo, config)
    except (DataError, TrainingError) as exc:
        _fail(str(exc))
    out = Path(out_dir or Path(settings.trainer.policy_dir) / f"{algo}-{Path(data_path).name.split('.')[0]}-s{seed}")
    gpus = settings.trainer.gpus if gpus is None else gpus
    with contextlib.ExitStack() as stack:
        try:
            with contextlib.redirect_stdout(sys.stderr):
                where = stack.enter_context(ray_session(address=address))
        except RayUnavailable as exc:  # a runtime failure, not bad input
            raise RuntimeFailure(str(exc)) from None
        fresh = not out.exists()
        try:
            _train(algo, data_path, bars, out, timesteps, seed, gpus, config, folds, where, env_runners)
        except BaseException:
            if fresh:  # a failed run leaves no half-written checkpoint behind
                shutil.rmtree(out, ignore_errors=True)
            raise


def _train(
    algo: str,
    data_path: str,
    bars: Any,
    out: Path,
    timesteps: int,
    seed: int,
    gpus: float,
    config: dict[str, Any],
    folds: int,
    where: dict[str, Any],
    env_runners: int | None,
) -> None:
    from services.trainer.training import TrainingError
    from services.trainer.training import train as run_training

    if folds > 0:
        nodes: list[int] = []

        def train_fold(*args: Any, **kwargs: Any) -> Any:
            kwargs["env_runners"] = env_runners
            result = run_training(*args, **kwargs)
            nodes.append(int(result.metrics["ray_nodes"]))
            return result

        from services.trainer.evaluation import public_report
        from services.trainer.folds import walk_forward_train

        with contextlib.redirect_stdout(sys.stderr):
            try:
                summary = walk_forward_train(bars, algo, out, folds, timesteps, seed, gpus, config, train_fn=train_fold)
            except (TrainingError, DataError, ValueError) as exc:
                _fail(str(exc))
        click.echo(json.dumps({**public_report(summary), **where, "ray_nodes": max(nodes)}))
        return
    with progress_bar(timesteps, f"training {algo}") as progress:
        try:
            with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the one JSON line
                result = run_training(
                    bars,
                    algo,
                    out,
                    timesteps,
                    seed,
                    gpus,
                    config,
                    data_label=str(data_path),
                    progress=progress,
                    env_runners=env_runners,
                )
        except (TrainingError, DataError, ValueError) as exc:
            _fail(str(exc))
    click.echo(json.dumps({**where, **result.metrics}))  # the run's ray_nodes, not the cluster's


@click.command()
@click.option(
    "--data",
    "data_path",
    type=click.Path(),
    required=True,
    help="candle or trade file; or a DIR of <exchange>__<BASE>-<QUOTE>.csv files (a portfolio policy; "
    "recorded funding from <exchange>__<BASE>-<QUOTE>.funding.csv, else the policy's constant: see `funding`)",
)
@click.option(
    "--policy",
    "policy_spec",
    required=True,
    metavar="CKPT|baseline:NAME",
    help="a `tradewind train --out` directory under TRADEWIND_TRAINER__POLICY_DIR (its weights-only actor.npz "
    "is loaded, never the pickled checkpoint), or baseline:buy_and_hold|flat|momentum",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option(
    "--windows",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="walk-forward windows over the out-of-sample bars",
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=None,
    help="trials behind this policy for the deflated Sharpe (default: count in the registry, else 1)",
)
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="write the equity curves as HTML")
@click.option("--bar-seconds", type=float, default=60.0, show_default=True, help="bar length when DATA holds trades")
@click.option("--no-short", is_flag=True, help="baselines: no short positions (spot venue without margin)")
def backtest(
    data_path: str,
    policy_spec: str,
    as_json: bool,
    windows: int,
    trials: int | None,
    plot: str | None,
    bar_seconds: float,
    no_short: bool,
) -> None:
    """Walk-forward backtest on out-of-sample bars with fees and slippage, beside the baselines.

    A checkpoint is evaluated only on bars after the data it was trained on. Costs are the
    checkpoint's cost model (baselines: the trainer settings' fee, spread and impact).
    """
    from services.trainer.evaluation import out_of_sample_start, public_report, walk_forward, write_equity_html
    from services.trainer.policy import load_policy
    from shared.cli_support import load_settings_or_exit
    from shared.rl.costs import CostModel, FeeTier
    from shared.rl.env_config import EnvConfig
    from shared.rl.features import compute_features
    from shared.rl.policy import CheckpointPolicy, PolicyError

    settings = load_settings_or_exit()
    if Path(data_path).is_dir():  # a portfolio policy (or baseline) over every market in the directory
        from services.trainer.portfolio_cli import backtest_dir

        backtest_dir(data_path, policy_spec, as_json, settings.trainer.policy_dir, settings)
        return
    try:
        bars = load_bars(data_path, bar_seconds)
        policy = load_policy(policy_spec, settings.trainer.policy_dir)
    except (DataError, PolicyError) as exc:
        _fail(str(exc))
    options = policy.feature_options if isinstance(policy, CheckpointPolicy) else {}
    market = compute_features(bars, **options)
    if isinstance(policy, CheckpointPolicy):
        config = policy.env_config
    else:
        t = settings.trainer
        cost = CostModel(tiers=(FeeTier(0.0, t.fee_taker, t.fee_taker),), half_spread=t.half_spread, impact=t.impact)
        config = EnvConfig(cost=cost, allow_short=t.allow_short and not no_short)
    try:
        start = out_of_sample_start(policy, market)
    except (ValueError, PolicyError) as exc:
        _fail(f"{data_path}: {exc}")
    if len(market) - 1 - start < MIN_BACKTEST_BARS:
        _fail(
            f"{data_path}: expected at least {MIN_BACKTEST_BARS} out-of-sample bars for a backtest, found "
            f"{max(len(market) - 1 - start, 0)} ({len(market)} bars, out of sample from bar {start})"
        )
    if plot and not Path(plot).resolve().parent.is_dir():
        _fail(f"--plot {plot}: directory {Path(plot).resolve().parent} does not exist")
    if trials is None:
        trials = _registry_trials(settings)
    try:
        report = walk_forward(policy, market, config, start, windows=windows, trials=trials)
    except (ValueError, PolicyError) as exc:
        _fail(f"{data_path}: {exc}")
    report["trials"] = trials
    if plot:
        try:
            write_equity_html(report, plot)
        except OSError as exc:
            _fail(f"--plot {plot}: cannot write ({exc.strerror or exc})")
    public = public_report(report)
    if as_json:
        click.echo(json.dumps(public))
        return
    _print_table(public)


def _reading_database(url: str, run: Any) -> Any:
    with reaching("PostgreSQL", url):
        return asyncio.run(run())


def _registry_trials(settings: Any) -> int:
    """Trials recorded in the policies table when a database is configured; 1 otherwise."""
    if not os.environ.get("DATABASE_URL"):
        return 1

    async def count() -> int:
        from shared.storage import Database, policies

        db = await Database.connect(os.environ["DATABASE_URL"], settings.storage, NETWORK_TIMEOUT_S)
        try:
            return max(await policies.count(db), 1)
        finally:
            await db.close()

    try:
        return asyncio.run(count())
    except Exception:  # the registry is optional for an offline backtest
        return 1


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['policy']}: out-of-sample, after costs ({report['bars']} bars)")
    table.add_column("metric")
    names = [report["policy"], *report["baselines"]]
    for name in names:
        table.add_column(name, justify="right")
    for key in (*METRIC_ROWS, "deflated_sharpe"):
        row = [report[key], *(b[key] for b in report["baselines"].values())]
        table.add_row(key, *(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    Console().print(table)


@click.command()
@click.option("--kind", type=click.Choice(["regime_momentum", "mean_reverting"]), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--bars",
    "n_bars",
    type=click.IntRange(min=MIN_SYNTH_BARS),
    default=50_000,
    show_default=True,
    help=f"bars to write (at least {MIN_SYNTH_BARS}: the oracle is judged on the last fifth)",
)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="CSV to write")
def synth(kind: str, seed: int, n_bars: int, out_path: str) -> None:
    """Write a synthetic market with known structure; print its oracle's out-of-sample Sharpe as JSON."""
    from services.trainer.backtest import metrics, simulate
    from services.trainer.synth import make_market, write_csv
    from shared.rl.env_config import EnvConfig
    from shared.rl.features import compute_features

    market = make_market(kind, n_bars, seed)
    try:
        write_csv(market.bars, out_path)
    except OSError as exc:
        _fail(f"--out {out_path}: cannot write ({exc.strerror or exc})")
    features = compute_features(market.bars)
    start = int(n_bars * 0.8)  # the test split of the default config
    result = simulate(features, market.oracle_positions[start : n_bars - 1], start, EnvConfig().cost)
    click.echo(
        json.dumps({"kind": kind, "seed": seed, "bars": n_bars, "out": out_path, "oracle_test": metrics(result)})
    )
