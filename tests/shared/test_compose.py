"""docker-compose.yml cannot run here (no Docker engine), so check what can break it statically."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from shared.cli import cli
from shared.config import Settings, unknown_env_settings
from shared.embedded import REDIS_ROLES, redis_acl
from shared.signing import ROLES, SIGNING_SERVICES, Signer, role_key

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ONE_SHOT = [n for n, s in SERVICES.items() if s.get("restart") == "no"]  # others wait for them to complete
TRADEWIND_SERVICES = [n for n, s in SERVICES.items() if s.get("command", [""])[0] == "tradewind" and n not in ONE_SHOT]
NOT_OURS = {"RAY_ADDRESS", "RAY_USAGE_STATS_ENABLED", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
SECRETS_DIR = "TRADEWIND_SECRETS_DIR"


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
    ours = {k: v for k, v in env.items() if k not in NOT_OURS | {SECRETS_DIR}}
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
    web = service["environment"].get("TRADEWIND_DASHBOARD__PORT")  # the dashboard serves its pages and /healthz
    served = [f":{port}/metrics", *([f":{web}/healthz"] if web else [])]
    assert any(endpoint in " ".join(service["healthcheck"]["test"]) for endpoint in served), served
    assert service["environment"]["TRADEWIND_METRICS__HOST"] == "0.0.0.0"  # reachable from the healthcheck
    for mapping in service.get("ports", []):
        host, _, container = mapping.rpartition(":")
        assert container in (port, web)
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


def test_every_long_running_service_restarts_and_is_health_checked():
    assert ONE_SHOT == ["keys"]
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            continue
        assert service.get("restart") == "unless-stopped", name
        test = service.get("healthcheck", {}).get("test", [])
        assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name} has no healthcheck"


def test_ray_workers_health_check_the_head_they_joined_with_a_ray_command_that_exists():
    from ray.scripts.scripts import cli as ray_cli  # the image's ray CLI: same version as the venv's

    assert ray_cli.get_command(click.Context(ray_cli), "health-check") is not None
    for name in ("ray-worker", "ray-worker-gpu"):
        service = SERVICES[name]
        joined = next(a for a in service["command"] if a.startswith("--address="))
        assert service["healthcheck"]["test"] == ["CMD", "ray", "health-check", joined], name
        assert int(service["healthcheck"]["timeout"].removesuffix("s")) < int(
            service["healthcheck"]["interval"].removesuffix("s")
        )


def test_dependencies_mean_what_compose_means():
    """`docker compose config` semantics: a condition compose knows, a health condition on a service that
    has a healthcheck, a completion condition on a one-shot, and nothing default waits on a profile."""
    for name, service in SERVICES.items():
        for dep, spec in service.get("depends_on", {}).items():
            condition = spec["condition"]
            assert condition in ("service_started", "service_healthy", "service_completed_successfully"), name
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dep], (name, dep)
            if condition == "service_completed_successfully":
                assert dep in ONE_SHOT, (name, dep)
            if "profiles" not in service:
                assert "profiles" not in SERVICES[dep], f"{name} waits on {dep}, which only a profile starts"
    for name in ONE_SHOT:
        assert "healthcheck" not in SERVICES[name] and "ports" not in SERVICES[name]


def _has_docker_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not _has_docker_compose(), reason="no `docker compose` on this machine")
def test_docker_compose_config_accepts_the_file():
    env = {**os.environ, **{f"REDIS_PASSWORD_{r.upper()}": "0" * 8 for r in REDIS_ROLES}}
    env |= {"TRADEWIND_DASHBOARD_TOKEN": "t", "GRAFANA_ADMIN_PASSWORD": "g"}
    done = subprocess.run(["docker", "compose", "config", "-q"], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()


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


def _roles_used(service: str) -> set[str]:
    """The control keys a service's code signs or verifies with: a ``ControlGate`` verifies every role's
    controls; ``Signer.of(..., RISK|OPERATOR)`` signs as that role (its CLI included: run in its container)."""
    needed: set[str] = set()
    for path in (ROOT / "services" / service).rglob("*.py"):
        code = path.read_text()
        if "ControlGate(" in code:
            needed |= set(ROLES)
        needed |= {m.lower() for m in re.findall(r"Signer\.of\(.*\b(RISK|OPERATOR)\)", code)}
    return needed


def _roles_given(service: dict[str, Any], generated: set[str]) -> set[str]:
    env = service.get("environment", {})
    given = {r for r in ROLES if f"TRADEWIND_CONTROL__{r.upper()}_KEY" in env}
    if SECRETS_DIR in env:
        assert f"control-keys:{env[SECRETS_DIR]}:ro" in service["volumes"], "the keys volume, read-only"
        assert service["depends_on"]["keys"] == {"condition": "service_completed_successfully"}
        given |= generated
    return given


def test_keys_service_writes_the_secret_file_the_services_read(tmp_path, monkeypatch):
    """What the one-shot `keys` service runs, for real: `tradewind keys` with its var dir writes
    <var_dir>/secrets/tradewind_control (0600, both keys), kept on a rerun; a service reading that dir
    as TRADEWIND_SECRETS_DIR signs with both."""
    keys = SERVICES["keys"]
    var_dir = keys["environment"]["TRADEWIND_VAR_DIR"]
    assert keys["volumes"] == [f"control-keys:{var_dir}/secrets"]
    assert keys["command"][:2] == ["sh", "-c"]
    assert keys["command"][2] == f"tradewind keys && chown -R 1000:1000 {var_dir}/secrets", "the image's user"
    assert "useradd --create-home --uid 1000 tradewind" in (ROOT / "Dockerfile").read_text()
    for var in [v for v in os.environ if v.startswith("TRADEWIND_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("TRADEWIND_VAR_DIR", str(tmp_path))
    first = CliRunner().invoke(cli, ["keys"])
    assert first.exit_code == 0, first.output
    secrets_dir = tmp_path / "secrets"
    assert first.output.strip() == str(secrets_dir)
    written = (secrets_dir / "tradewind_control").read_bytes()
    assert stat.S_IMODE((secrets_dir / "tradewind_control").stat().st_mode) == 0o600
    assert CliRunner().invoke(cli, ["keys"]).exit_code == 0
    assert (secrets_dir / "tradewind_control").read_bytes() == written, "generated once, never replaced"
    control = Settings(_secrets_dir=str(secrets_dir)).control
    assert {r for r in ROLES if role_key(control, r)} == set(ROLES)
    assert {Signer.of(control, r).role for r in ROLES} == set(ROLES)


@pytest.mark.parametrize("name", TRADEWIND_SERVICES)
def test_every_service_gets_the_control_keys_its_code_uses_and_no_other(name):
    """risk and executor verify every risk:control entry (both keys) and sign with the risk key; the
    operator's `tradewind halt` runs in the risk container. Services that sign nothing get no key."""
    service = SERVICES[name]
    role = service["command"][1]
    given = _roles_given(service, generated=set(ROLES))
    needed = _roles_used(role)
    if role == "dashboard":  # its halt button signs as the operator, but its Redis user cannot write:
        assert "-@all +@read" in REDIS_ROLES["dashboard"]  # in compose, halts go through the CLI (README)
        assert needed == {"operator"} and given == set()
        return
    assert given == needed, f"{name} uses the {sorted(needed)} keys, compose gives it {sorted(given)}"
    assert (role in SIGNING_SERVICES) == bool(given), "the services `tradewind up` hands the keys to"
