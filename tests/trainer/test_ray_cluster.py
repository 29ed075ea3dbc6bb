"""Training on a real 2-node Ray cluster on loopback (two logical CPUs a node): one run spreads its
env runners over both nodes, and two trainers share the cluster at once, both finishing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.trainer.cluster import HOST_CPUS, bundles
from services.trainer.synth import lead_lag, write_market_dir
from tests.trainer.ray_cluster import CPUS_PER_NODE, NODES, Cluster, two_node_cluster

DATA = Path(__file__).resolve().parents[1] / "data" / "trainer" / "btc-perp-20211231_1m_head3000.csv.gz"
TINY = ("--timesteps", "256", "--set", "training.train_batch_size_per_learner=256")
TINY += ("--set", "training.minibatch_size=64", "--set", "training.num_epochs=1")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_node_cluster() as running:
        yield running


def _train(cluster: Cluster, out: Path, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "shared", "train", "--algo", "ppo", "--data", str(DATA), "--out", str(out), *TINY]
    cmd += ["--address", cluster.address, *args]
    return subprocess.Popen(
        cmd, cwd=cluster.tmp, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finished(run: subprocess.Popen[str], timeout: float) -> dict[str, object]:
    stdout, stderr = run.communicate(timeout=timeout)
    assert run.returncode == 0, stderr[-3000:]
    found: dict[str, object] = json.loads(stdout)
    return found


def test_the_host_slot_is_smaller_than_a_runner_slot() -> None:
    # What makes SPREAD reach every node (see cluster.py): the host's node is the least loaded after a pass.
    assert bundles(2, 1.0, 0.0) == [{"CPU": HOST_CPUS}, {"CPU": 1.0}, {"CPU": 1.0}]
    assert HOST_CPUS < 1.0
    assert bundles(1, 1.0, 1.0)[0] == {"CPU": HOST_CPUS, "GPU": 1.0}


@pytest.mark.slow
@pytest.mark.timeout(900)  # a 2-core CI machine under load: minutes
def test_one_run_spreads_its_env_runners_over_both_nodes(cluster: Cluster) -> None:
    out = cluster.tmp / "one"
    metrics = _finished(_train(cluster, out), timeout=600)
    assert metrics["ray_nodes"] == NODES  # one env runner a node, by default
    assert str(metrics["ray_address"]).rpartition(":")[2] == cluster.address.rpartition(":")[2]
    assert int(str(metrics["timesteps"])) >= 256
    assert metrics["checkpoint"] == str(out)
    meta = json.loads((out / "tradewind.json").read_text())
    assert meta["config"]["env_runners"]["num_env_runners"] == NODES
    assert (out / "actor.npz").is_file() and (out / "algorithm").is_dir()  # came back from the host's node


@pytest.mark.slow
@pytest.mark.timeout(900)  # a 2-core CI machine under load: minutes
def test_two_trainers_share_the_cluster_at_once(cluster: Cluster) -> None:
    # Each takes HOST_CPUS + 1 slot of the 4: both fit at once, neither waits for the other.
    assert 2 * (HOST_CPUS + 1) <= NODES * CPUS_PER_NODE
    runs = [_train(cluster, cluster.tmp / f"pair-{i}", "--env-runners", "1", "--seed", str(i)) for i in range(2)]
    results = [_finished(run, timeout=600) for run in runs]
    for i, metrics in enumerate(results):
        assert metrics["ray_nodes"] == 1
        assert (cluster.tmp / f"pair-{i}" / "actor.npz").is_file()


ROUND = """
import json, sys
from pathlib import Path
from services.trainer.rounds import train_and_evaluate
from services.trainer.data import load_bars
from services.trainer.training import train
from shared.sections.trainer import TrainerSettings

def tiny(*args, config, **kwargs):  # the round's own config, with a batch a few hundred steps long
    config["training"].update(train_batch_size_per_learner=256, minibatch_size=64, num_epochs=1)
    return train(*args, config=config, **kwargs)

cfg = TrainerSettings(algo="ppo", timesteps=256, policy_dir=sys.argv[2])
trials, _ = train_and_evaluate(cfg, load_bars(sys.argv[1], 60.0), None, 0, train_fn=tiny)
print(json.dumps([json.loads((Path(t.checkpoint) / "tradewind.json").read_text())["metrics"] for t in trials]))
"""


@pytest.mark.slow
@pytest.mark.timeout(900)  # a 2-core CI machine under load: minutes
def test_an_online_round_trains_on_the_cluster_named_by_ray_address(cluster: Cluster) -> None:
    # The online trainer's rounds call the same `train` in a child process: RAY_ADDRESS reaches it.
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    policies = cluster.tmp / "online"
    cmd = [sys.executable, "-c", ROUND, str(DATA), str(policies)]
    done = subprocess.run(cmd, cwd=cluster.tmp, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (metrics,) = json.loads(done.stdout.strip().splitlines()[-1])
    assert metrics["ray_nodes"] == NODES
    assert Path(metrics["checkpoint"]).parent == policies


@pytest.mark.slow
@pytest.mark.timeout(900)  # a 2-core CI machine under load: minutes
def test_tune_trials_spread_over_the_cluster(cluster: Cluster, isolated: tuple[str, str]) -> None:
    database_url, _ = isolated
    env = {**cluster.env, "DATABASE_URL": database_url, "TRADEWIND_TRAINER__POLICY_DIR": str(cluster.tmp)}
    best = cluster.tmp / "tuned"
    cmd = [sys.executable, "-m", "shared", "tune", "--algo", "ppo", "--data", str(DATA), "--samples", "2", *TINY]
    cmd += ["--address", cluster.address, "--env-runners", "2", "--out", str(best), "--json"]
    # SPREAD is best effort: with 1-CPU runners a trial may put both on the node with room for two (seen
    # once in CI). Runners of 1.5 CPUs of a 2-CPU node cannot share one, so each trial must use both nodes
    cmd += ["--set", "env_runners.num_cpus_per_env_runner=1.5"]
    done = subprocess.run(cmd, cwd=cluster.tmp, env=env, capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["recorded"] == 2
    assert [t["ray_nodes"] for t in report["trials"]] == [NODES, NODES]  # each trial's runners on both nodes
    assert (best / "actor.npz").is_file()


NO_ROOM = """
import ray
from pathlib import Path
from services.trainer.cluster import train_spread
from services.trainer.errors import TrainingError
from services.trainer.training import load_config, train
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
try:
    train_spread(train, {"config": load_config("ppo")}, Path("never"), runners=2, timeout=2.0)
except TrainingError as exc:
    print(exc)
"""


@pytest.mark.slow
def test_a_run_that_finds_no_room_fails_naming_the_slots() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    with tempfile.TemporaryDirectory(prefix="tw-nr-", dir="/tmp") as name:  # Ray's socket paths are length-limited
        env.update(RAY_TMPDIR=name, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
        cmd = [sys.executable, "-c", NO_ROOM]
        done = subprocess.run(cmd, cwd=name, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "no room for" in done.stdout and "CPU 2.5 of 1 logical CPUs) within 2 s" in done.stdout
        assert not (Path(name) / "never").exists()


@pytest.mark.slow
@pytest.mark.timeout(900)  # a 2-core CI machine under load: minutes
def test_a_portfolio_run_spreads_its_env_runners_over_both_nodes(cluster: Cluster) -> None:
    data = cluster.tmp / "markets"
    data.mkdir()
    write_market_dir(lead_lag(600, 0), str(data))
    out = cluster.tmp / "portfolio"
    cmd = [sys.executable, "-m", "shared", "train", "--algo", "ppo", "--data", str(data), "--out", str(out), *TINY]
    cmd += ["--address", cluster.address]
    done = subprocess.run(cmd, cwd=cluster.tmp, env=cluster.env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(done.stdout.strip().splitlines()[-1])
    assert metrics["ray_nodes"] == NODES  # one env runner a node, by default, as for one market
    assert metrics["markets"] == ["binance_futures:BTC/USDT", "coinbase:BTC/USD"]
    assert metrics["checkpoint"] == str(out)
    meta = json.loads((out / "tradewind.json").read_text())
    assert meta["config"]["env_runners"]["num_env_runners"] == NODES
    assert (out / "actor.npz").is_file() and (out / "algorithm").is_dir()  # came back from the host's node
