"""`tradewind tune`: Ray Tune trials over the search space in `[tune]` of configs/<algo>.toml.

Each trial is an ordinary training run (its own placement group, env runners spread over the
cluster's nodes) judged on the validation split, as `[selection]` judges a run's checkpoints; the test
split stays unseen. Every trial is recorded in the policies registry, so the deflated Sharpe ratio
of the exported best counts them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from services.trainer.data import DataError, load_bars
from shared.cli_support import NETWORK_TIMEOUT_S, InputError, RuntimeFailure, reaching

JUDGE = "validation_sharpe"
DOMAINS = ("loguniform", "uniform", "choice", "randint")


def search_space(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Tune domains from `[tune]`: `"section.key" = {loguniform = [lo, hi]}` (or uniform, randint, choice)."""
    from ray import tune

    space: dict[str, Any] = {}
    for name, spec in config.get("tune", {}).items():
        section, dot, _ = name.partition(".")
        if not dot or section not in config or not isinstance(spec, dict) or len(spec) != 1:
            raise InputError(f'[tune] {name}: expected "section.key" = {{one of {", ".join(DOMAINS)} = [...]}}')
        kind, values = next(iter(spec.items()))
        if kind not in DOMAINS or not isinstance(values, list) or not values:
            raise InputError(f"[tune] {name}: expected one of {', '.join(DOMAINS)} with a list, found {spec!r}")
        space[name] = tune.choice(values) if kind == "choice" else getattr(tune, kind)(*values)
    if not space:
        raise InputError('[tune]: expected at least one "section.key" to search, found none')
    return space


def with_sample(config: dict[str, Any], sample: dict[str, Any]) -> dict[str, Any]:
    """`config` with each `section.key` of the trial's sample set."""
    out = copy.deepcopy(config)
    for name, value in sample.items():
        section, _, key = name.partition(".")
        out.setdefault(section, {})[key] = value
    return out


def _trial(sample: dict[str, Any], **job: Any) -> None:
    """One Tune trial: train into <root>/<trial id>, report its validation Sharpe ratio."""
    from ray import tune

    from services.trainer.training import train

    out = Path(job.pop("root")) / tune.get_context().get_trial_id()
    result = train(out_dir=out, config=with_sample(job.pop("config"), sample), **job)
    sharpe = float(result.metrics["validation"]["sharpe"])
    tune.report({JUDGE: sharpe, "checkpoint": str(out), "ray_nodes": int(result.metrics["ray_nodes"])})


def run_trials(
    bars: Any, algo: str, config: dict[str, Any], root: Path, samples: int, timesteps: int, seed: int, runners: int
) -> list[dict[str, Any]]:
    """Run `samples` trials (each in a SPREAD placement group of a host and `runners` env runners); return
    each trial's sample, checkpoint and validation Sharpe ratio, in trial order."""
    from ray import tune

    from services.trainer.cluster import bundles

    cpus = float(config.get("env_runners", {}).get("num_cpus_per_env_runner", 1))
    job = {"bars": bars, "algo": algo, "config": config, "root": str(root), "timesteps": timesteps, "seed": seed}
    job["env_runners"] = runners
    trainable = tune.with_resources(
        tune.with_parameters(_trial, **job), tune.PlacementGroupFactory(bundles(runners, cpus, 0.0), strategy="SPREAD")
    )
    tuner = tune.Tuner(
        trainable,
        param_space=search_space(config),
        tune_config=tune.TuneConfig(num_samples=samples, metric=JUDGE, mode="max"),
        run_config=tune.RunConfig(name="tune", storage_path=str(root / "ray"), verbose=0),
    )
    grid = tuner.fit()
    trials = []
    for result in (grid[i] for i in range(len(grid))):
        reported = result.metrics or {}
        if result.error is not None or JUDGE not in reported:
            raise RuntimeFailure(f"tune trial {result.path}: failed ({result.error})")
        trial = {"sample": result.config, "checkpoint": reported["checkpoint"], JUDGE: float(reported[JUDGE])}
        trials.append({**trial, "ray_nodes": reported["ray_nodes"]})  # nodes whose env runners sampled
    return trials


def export_best(trials: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """Copy the trial with the best validation Sharpe ratio to `out`, recording the selection so a
    backtest counts only bars after the validation split, and re-export its weights-only file."""
    from shared.rl.policy import META_FILE
    from shared.rl.weights import export_weights

    best = max(trials, key=lambda t: t[JUDGE] if math.isfinite(t[JUDGE]) else -math.inf)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(best["checkpoint"], out)
    meta = json.loads((out / META_FILE).read_text())
    meta["selection"] = {"metric": "validation sharpe", "among_tune_trials": len(trials), "sample": best["sample"]}
    meta["metrics"]["checkpoint"] = str(out)
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    export_weights(out)
    return best


async def record(
    database_url: str, settings: Any, algo: str, trials: list[dict[str, Any]], best: dict[str, Any]
) -> int:
    """Every trial in the policies registry (source "tune"), each with why it was (not) the one exported."""
    from shared.storage import Database
    from shared.storage.policies import PolicyRegistry

    db = await Database.connect(database_url, settings.storage, NETWORK_TIMEOUT_S)
    try:
        await db.migrate()
        registry = PolicyRegistry(db)
        for trial in trials:
            meta = json.loads((Path(trial["checkpoint"]) / "tradewind.json").read_text())
            metrics = {**meta["metrics"], JUDGE: trial[JUDGE]}
            hyper = {**trial["sample"], "timesteps": meta["timesteps"], "seed": meta["seed"]}
            policy_id = await registry.record_trial(
                algo,
                trial["checkpoint"],
                metrics,
                hyper,
                meta["train_from_ns"],
                meta["validation_to_ns"],
                source="tune",
            )
            reason = (
                f"tune: best validation sharpe {trial[JUDGE]:.4f} of {len(trials)} trials; exported"
                if trial is best
                else f"tune: validation sharpe {trial[JUDGE]:.4f} below the best {best[JUDGE]:.4f}"
            )
            await registry.verdict([policy_id], reason)
        return len(trials)
    finally:
        await db.close()


@click.command()
@click.option("--algo", type=click.Choice(["dqn", "ppo", "appo"]), required=True, help="RLlib algorithm")
@click.option("--data", "data_path", type=click.Path(dir_okay=False), required=True, help="candle or trade file")
@click.option("--samples", type=click.IntRange(min=1), required=True, help="trials to run (samples of [tune])")
@click.option("--timesteps", type=click.IntRange(min=1), default=50_000, show_default=True, help="env steps a trial")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="where the best is exported")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="TOML overriding configs")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="override one setting")
@click.option("--bar-seconds", type=float, default=60.0, show_default=True, help="bar length when DATA holds trades")
@click.option("--address", default=None, metavar="HOST:PORT", help="Ray cluster (default: RAY_ADDRESS, else local)")
@click.option("--env-runners", type=click.IntRange(min=1), default=1, show_default=True, help="env runners a trial")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def tune(
    algo: str,
    data_path: str,
    samples: int,
    timesteps: int,
    seed: int,
    out_dir: str | None,
    config_path: str | None,
    overrides: tuple[str, ...],
    bar_seconds: float,
    address: str | None,
    env_runners: int,
    as_json: bool,
) -> None:
    """Hyperparameter search with Ray Tune over [tune] in configs/<algo>.toml; trials spread over the cluster.

    Each trial trains and is judged on the validation split; every trial is recorded in the policies
    registry (source "tune": needs DATABASE_URL or a running stack), and the best is exported to --out
    like `tradewind train` (actor.npz), its backtests counting only bars after validation. Trials write
    under <out>.trials/: on a cluster of several machines that must be storage every node mounts.
    """
    from services.trainer.config_check import check_config
    from services.trainer.training import RayUnavailable, TrainingError, load_config, ray_session
    from shared.cli_support import load_settings_or_exit, running_stack

    settings = load_settings_or_exit()
    found = running_stack(settings, redis=False, database=True)  # fail before training when trials cannot be recorded
    try:
        bars = load_bars(data_path, bar_seconds)
        config = load_config(algo, config_path, overrides)
        check_config(algo, config)
        search_space(config)
    except (DataError, TrainingError) as exc:
        raise InputError(str(exc)) from None
    stem = Path(data_path).name.split(".")[0]
    out = Path(out_dir or Path(settings.trainer.policy_dir) / f"{algo}-{stem}-tune-s{seed}").resolve()
    root = out.with_name(out.name + ".trials")
    with contextlib.ExitStack() as stack:
        try:
            with contextlib.redirect_stdout(sys.stderr):
                where = stack.enter_context(ray_session(address=address))
        except RayUnavailable as exc:
            raise RuntimeFailure(str(exc)) from None
        with contextlib.redirect_stdout(sys.stderr):
            trials = run_trials(bars, algo, config, root, samples, timesteps, seed, env_runners)
    best = export_best(trials, out)
    with reaching("PostgreSQL", found.database):
        recorded = asyncio.run(record(found.database, settings, algo, trials, best))
    report = {"algo": algo, "best": str(out), "recorded": recorded, "ray_address": where["ray_address"]}
    report.update(trials=trials, best_sample=best["sample"], best_validation_sharpe=best[JUDGE])
    if as_json:
        click.echo(json.dumps(report))
        return
    for trial in trials:
        click.echo(f"{trial[JUDGE]:+.4f}  {json.dumps(trial['sample'])}  {trial['checkpoint']}")
    click.echo(f"best exported to {out} ({recorded} trials recorded in the policies registry)")
