"""deploy/kuberay/raycluster.yaml without a cluster: ray's own reader of a RayCluster (the KubeRay
autoscaler's, which turns the CR into node types and validates them against ray's cluster schema)
and the facts it shares with docker-compose.yml.

KubeRay's CRD (its openAPIV3Schema) is not validated against here: no package this project can
install ships it (see the README, "Scaling out")."""

from __future__ import annotations

import copy
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
MANIFEST: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "kuberay" / "raycluster.yaml").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def node_types(cr: dict[str, Any]) -> dict[str, Any]:
    """What the KubeRay autoscaler makes of the CR (the API server adds the namespace)."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    cr = copy.deepcopy(cr)
    cr["metadata"].setdefault("namespace", "default")
    return dict(_derive_autoscaling_config_from_ray_cr(cr)["available_node_types"])


def test_it_is_a_ray_io_v1_raycluster_of_the_installed_ray():
    assert MANIFEST["apiVersion"] == "ray.io/v1" and MANIFEST["kind"] == "RayCluster"
    assert MANIFEST["spec"]["rayVersion"] == version("ray"), "the image's ray: the one this project pins"


def test_ray_reads_the_head_and_worker_groups_as_intended():
    types = node_types(MANIFEST)
    assert types["headgroup"]["resources"] == {"CPU": 1, "memory": 2 * 2**30}
    assert types["headgroup"]["max_workers"] == 0
    assert types["cpu"]["resources"] == {"CPU": 2, "memory": 4 * 2**30}
    assert (types["cpu"]["min_workers"], types["cpu"]["max_workers"]) == (1, 8)
    assert types["gpu"]["resources"] == {"CPU": 4, "GPU": 1, "memory": 16 * 2**30}
    assert (types["gpu"]["min_workers"], types["gpu"]["max_workers"]) == (0, 2)


def test_ray_refuses_a_broken_manifest():
    """The reader is not a rubber stamp: a group without a pod template or with a GPU count that is
    not a number is an error."""
    broken = copy.deepcopy(MANIFEST)
    del broken["spec"]["workerGroupSpecs"][0]["template"]
    with pytest.raises(KeyError):
        node_types(broken)
    broken = copy.deepcopy(MANIFEST)
    broken["spec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"
    ] = "one"
    with pytest.raises(ValueError):
        node_types(broken)


def test_groups_are_well_formed_and_sized():
    spec = MANIFEST["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), "rayStartParams: strings"
        (container,) = group["template"]["spec"]["containers"]
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], "guaranteed pods: Ray sizes itself by the limits"
        assert {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"} in container["env"]
        assert {"name": "shm", "mountPath": "/dev/shm"} in container["volumeMounts"], "the object store"
    names = [g["groupName"] for g in spec["workerGroupSpecs"]]
    assert len(names) == len(set(names))
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_images_and_head_match_compose():
    spec = MANIFEST["spec"]
    head = spec["headGroupSpec"]
    assert head["template"]["spec"]["containers"][0]["image"] == COMPOSE["ray-head"]["image"]
    assert f"--num-cpus={head['rayStartParams']['num-cpus']}" in COMPOSE["ray-head"]["command"]
    cpu, gpu = spec["workerGroupSpecs"]
    assert cpu["template"]["spec"]["containers"][0]["image"] == COMPOSE["ray-worker"]["image"]
    assert gpu["template"]["spec"]["containers"][0]["image"] == COMPOSE["ray-worker-gpu"]["image"]
    assert "nvidia.com/gpu" not in cpu["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_the_documented_trainer_address_is_the_head_service_kuberay_creates():
    """KubeRay names the head's service <cluster name>-head-svc; the GCS port is the head's 6379."""
    text = (ROOT / "deploy" / "kuberay" / "raycluster.yaml").read_text()
    address = f"{MANIFEST['metadata']['name']}-head-svc:6379"
    assert f"RAY_ADDRESS={address} tradewind trainer" in text
    assert f"--address {address}" in text
    ports = MANIFEST["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    assert {"containerPort": 6379, "name": "gcs-server"} in ports
