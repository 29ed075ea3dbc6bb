"""docker-compose.yml cannot run here (no Docker engine), so check what can break it statically."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from shared.cli import cli
from shared.config import Settings, unknown_env_settings
from shared.embedded import REDIS_ROLES, redis_acl

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
TRADEWIND_SERVICES = [n for n, s in SERVICES.items() if s.get("command", [""])[0] == "tradewind"]
NOT_OURS = {"RAY_ADDRESS", "RAY_USAGE_STATS_ENABLED", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}


def interpolate(value: str) -> str:
    """Resolve ${VAR:-default} the way compose does when VAR is unset, and ${VAR:?why} as if VAR were "secret"."""
    value = re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "secret", str(value))
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_the_design_services_are_all_there():
    for name in ("redis", "postgres", "ray-head", "ray-worker", "ingest", "trainer", "executor", "risk"):
        assert name in SERVICES
    assert SERVICES["redis"]["image"].startswith("redis:7")
    assert SERVICES["postgres"]["image"].startswith("postgres:16")


@pytest.mark.parametrize("name", TRADEWIND_SERVICES)
def test_every_command_exists_in_the_cli(name):
    argv = SERVICES[name]["command"][1:]
    ctx = click.Context(cli)
    command = cli.get_command(ctx, argv[0])
    assert command is not None, f"compose service {name} runs `tradewind {argv[0]}`, which does not exist"


@pytest.mark.parametrize("name", TRADEWIND_SERVICES)
def test_every_environment_variable_is_a_valid_setting(name):
    env = {k: interpolate(v) for k, v in SERVICES[name]["environment"].items()}
    ours = {k: v for k, v in env.items() if k not in NOT_OURS}
    assert unknown_env_settings(ours) == []
    # Build the settings from exactly what compose sets.
    nested: dict[str, Any] = {}
    for key, value in ours.items():
        if key in ("REDIS_URL", "DATABASE_URL"):
            nested[key.lower()] = value
            continue
        parts = key.removeprefix("TRADEWIND_").lower().split("__")
        target = nested
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    built = Settings(**nested)
    role = SERVICES[name]["command"][1]
    assert built.redis_url == f"redis://{role}:secret@redis:6379/0", "each service its own Redis user"
    assert built.mode == "paper"
    assert built.live is False


@pytest.mark.parametrize("name", TRADEWIND_SERVICES)
def test_metrics_port_matches_the_healthcheck_and_the_published_port(name):
    service = SERVICES[name]
    port = service["environment"]["TRADEWIND_METRICS__PORT"]
    assert f":{port}/metrics" in " ".join(service["healthcheck"]["test"])
    assert service["environment"]["TRADEWIND_METRICS__HOST"] == "0.0.0.0"  # reachable from the healthcheck
    for mapping in service.get("ports", []):
        host, _, container = mapping.rpartition(":")
        assert container == port
        assert host.startswith("127.0.0.1:"), "metrics are published on loopback only"


def test_published_host_ports_do_not_collide():
    seen: dict[str, str] = {}
    for name, service in SERVICES.items():
        for mapping in service.get("ports", []):
            host = mapping.rsplit(":", 1)[0]
            assert host not in seen, f"{name} and {seen[host]} both publish {host}"
            seen[host] = name


def test_volumes_and_dependencies_are_declared():
    declared = set(COMPOSE.get("volumes", {}))
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses undeclared volume {source}"
        for dep in service.get("depends_on", {}):
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"


def test_scalable_services_have_no_fixed_name_or_host_port():
    for name in ("ray-worker", "ray-worker-gpu"):
        assert "container_name" not in SERVICES[name]
        assert "ports" not in SERVICES[name], f"{name} could not be scaled with --scale"


def test_gpu_profile_gives_the_nvidia_device_to_trainer_and_ray_worker():
    for name in ("ray-worker-gpu", "trainer-gpu"):
        service = SERVICES[name]
        assert service["profiles"] == ["gpu"]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    for name in ("ray-worker", "trainer"):
        assert "profiles" not in SERVICES[name]


def test_everything_restarts_and_the_stateful_servers_are_health_checked():
    for name, service in SERVICES.items():
        assert service.get("restart") == "unless-stopped", name
    for name in ("redis", "postgres", "ray-head", *TRADEWIND_SERVICES):
        assert "healthcheck" in SERVICES[name], name


def test_dockerfile_installs_the_cpu_torch_by_default_and_the_built_wheel():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "whl/cpu" in dockerfile
    build, _, final = dockerfile.partition("\nFROM python:3.11-slim\n")
    assert "pip wheel" in build and final, "the first stage builds the wheel"
    assert "tradewind-*.whl)[rl]" in final, "the image installs the wheel with the rl extra"
    # no source tree in the image: services import from site-packages, package data included
    assert "COPY shared" not in final and "COPY services" not in final


def test_redis_has_one_acl_user_per_role_with_passwords_from_the_environment():
    """deploy/redis/users.acl is shared.embedded's table (the embedded server's ACL) with @role@ for
    each password; the redis service fills them in from REDIS_PASSWORD_<ROLE>, which compose requires."""
    acl = (ROOT / "deploy" / "redis" / "users.acl").read_text()
    assert acl == redis_acl({r: f"@{r}@" for r in REDIS_ROLES}), "regenerate deploy/redis/users.acl (see its test)"
    redis = SERVICES["redis"]
    assert "./deploy/redis/users.acl:/etc/redis/users.acl.in:ro" in redis["volumes"]
    script = " ".join(redis["command"])
    assert "--aclfile /tmp/users.acl" in script and "--appendonly yes --appendfsync everysec" in script
    for role in REDIS_ROLES:
        var = f"REDIS_PASSWORD_{role.upper()}"
        assert f'"s/@{role}@/$${var}/"' in script, role
        assert redis["environment"][var].startswith(f"${{{var}:?"), f"{var} must be required, never defaulted"
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]  # default: +ping


def test_no_redis_password_is_committed():
    text = (ROOT / "docker-compose.yml").read_text()
    for name, service in SERVICES.items():
        url = str(service.get("environment", {}).get("REDIS_URL", ""))
        if url:
            assert re.fullmatch(r"redis://[a-z]+:\$\{REDIS_PASSWORD_[A-Z]+:\?[^}]+\}@redis:6379/0", url), (name, url)
    assert "requirepass" not in text
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored, "the .env that holds the passwords must stay out of git"
