"""Settings for every Tradewind process, from the environment and an optional TOML file.

Precedence (highest first): explicit arguments, environment variables, secret files
(``TRADEWIND_SECRETS_DIR``), the TOML file (``TRADEWIND_CONFIG``), defaults.
Nested settings use ``__`` in the environment: ``TRADEWIND_BUS__MAXLEN=100000``.
``REDIS_URL`` and ``DATABASE_URL`` are read without the prefix, as every tool expects.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.exceptions import SettingsError

from shared.sections.alerts import AlertsSettings
from shared.sections.arbitrage import ArbitrageSettings
from shared.sections.base import Section
from shared.sections.control import ControlSettings
from shared.sections.executor import ExecutorSettings
from shared.sections.ingest import IngestSettings
from shared.sections.risk import RiskSettings
from shared.sections.trainer import TrainerSettings

ENV_PREFIX = "TRADEWIND_"


class ConfigError(Exception):
    """A setting has a bad value; the message names the setting and what was expected."""


class BusSettings(Section):
    """Redis stream bus tuning."""

    maxlen: int = Field(1_000_000, ge=1, description="approximate MAXLEN every producer trims to")
    batch_size: int = Field(500, ge=1, le=100_000, description="messages read per XREADGROUP")
    block_ms: int = Field(500, ge=1, le=60_000, description="XREADGROUP BLOCK; bounds how long a stop waits")
    claim_idle_ms: int = Field(30_000, ge=1, description="pending entries idle longer are reclaimed")
    claim_interval_ms: int = Field(5_000, ge=1, description="how often a consumer looks for such entries")
    max_deliveries: int = Field(5, ge=1, description="deliveries before an entry goes to the dead-letter stream")
    messages_per_entry: int = Field(100, ge=1, le=10_000, description="publisher batches this many per entry")
    cluster: bool = Field(False, description="REDIS_URL names a node of a Redis Cluster: use the cluster client")
    start_wait_s: float = Field(60.0, gt=0, description="a starting service waits this long for Redis, then exits")


class StorageSettings(Section):
    pool_min: int = Field(1, ge=0)
    pool_max: int = Field(8, ge=1)
    copy_batch: int = Field(10_000, ge=1, description="rows per COPY")
    flush_interval_s: float = Field(1.0, gt=0, description="a partial batch is written after this long")
    retry_max_s: float = Field(30.0, gt=0, description="give up a write after retrying this long")


class SupervisorSettings(Section):
    restart_backoff_s: float = Field(0.5, gt=0, description="first restart delay; doubles per crash")
    restart_backoff_max_s: float = Field(30.0, gt=0)
    crash_loop_restarts: int = Field(5, ge=1, description="restarts within the window that mean a crash loop")
    crash_loop_window_s: float = Field(60.0, gt=0)
    stop_grace_s: float = Field(10.0, gt=0, description="SIGTERM → SIGKILL grace per service")


class MetricsSettings(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9100, ge=0, le=65535, description="0 picks a free port")


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class DashboardSettings(Section):
    enabled: bool = Field(True, description="`tradewind up` starts the dashboard")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    token: SecretStr | None = Field(
        None, description="operator token: halt/resume need it; off loopback every request does (header or login)"
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host header names accepted besides loopback's and the bind host"
    )
    equity_interval_s: float = Field(10.0, gt=0, description="how often the equity curve is recorded")
    control_wait_s: float = Field(
        5.0, ge=0, description="Halt / Resume wait this long for the services to confirm (as `tradewind halt --wait-s`)"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    mode: Literal["replay", "synth", "paper", "live"] = "replay"
    live: bool = Field(False, description="TRADEWIND_LIVE=1 is one of the three gates of live trading")
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("REDIS_URL", f"{ENV_PREFIX}REDIS_URL", "redis_url")
    )
    database_url: SecretStr | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", f"{ENV_PREFIX}DATABASE_URL", "database_url")
    )
    var_dir: Path = Field(Path("var"), description="embedded servers' data, logs, checkpoints")
    service_name: str = Field("tradewind", description="set per process by the supervisor")

    bus: BusSettings = BusSettings()
    storage: StorageSettings = StorageSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    dashboard: DashboardSettings = DashboardSettings()
    ingest: IngestSettings = IngestSettings()
    executor: ExecutorSettings = ExecutorSettings()
    trainer: TrainerSettings = TrainerSettings()
    risk: RiskSettings = RiskSettings()
    arbitrage: ArbitrageSettings = ArbitrageSettings()
    control: ControlSettings = ControlSettings()
    alerts: AlertsSettings = AlertsSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            file_secret_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=os.environ.get(f"{ENV_PREFIX}CONFIG") or None),
        )

    @model_validator(mode="after")
    def _policy_root(self) -> Settings:
        if self.executor.policy_dir is None:  # the executor trades what the trainer writes
            self.executor.policy_dir = self.trainer.policy_dir
        if self.mode == "synth":  # the generated market's defaults, under whatever was set explicitly
            from shared.synth_mode import apply_synth_defaults

            apply_synth_defaults(self)
        if self.mode == "replay" and self.ingest.replay.sample == "day" and self.ingest.replay.data is None:
            from shared.samples import apply_day_defaults

            apply_day_defaults(self)
        return self

    def redacted(self) -> dict[str, Any]:
        """Return the settings as plain data with every secret masked, for display: secret fields
        whole, and the password (and secret-looking query parameters) of every URL."""
        data = self.model_dump(mode="json")
        if self.database_url is not None:
            data["database_url"] = mask_url(self.database_url.get_secret_value())
        return _mask_urls(data)


SECRET_QUERY_KEYS = ("password", "passwd", "secret", "token", "key", "signature", "sig", "auth")


def mask_url(url: str) -> str:
    """``url`` with its password and secret-looking query values replaced by ``***``."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "***"  # unparseable: show nothing rather than a secret
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        name = user.partition(":")[0]
        netloc = f"{name}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, "***" if any(s in k.lower() for s in SECRET_QUERY_KEYS) else v) for k, v in pairs]
        query = urlencode(masked, safe="*/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _mask_urls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_urls(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def setting_env_name(loc: tuple[int | str, ...]) -> str:
    """Map a validation error location to the environment variable a user would set."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    if parts and parts[0] in ("REDIS_URL", "DATABASE_URL"):
        return parts[0]
    if parts and parts[0].startswith(ENV_PREFIX):
        return "__".join(parts)
    return ENV_PREFIX + "__".join(p.upper() for p in parts)


def unknown_env_settings(environ: dict[str, str]) -> list[str]:
    """Return TRADEWIND_* variables that name no setting (typos would otherwise pass silently)."""
    own = {f"{ENV_PREFIX}CONFIG", f"{ENV_PREFIX}SECRETS_DIR"}
    fields = {name.upper() for name in Settings.model_fields}
    unknown = []
    for key in environ:
        if not key.startswith(ENV_PREFIX) or key in own:
            continue
        top = key[len(ENV_PREFIX) :].split("__", 1)[0]
        if top not in fields:
            unknown.append(key)
    return sorted(unknown)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into one ConfigError that names each setting."""
    unknown = unknown_env_settings(dict(os.environ))
    if unknown:
        raise ConfigError("unknown settings in the environment: " + ", ".join(unknown))
    config_file = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"{ENV_PREFIX}CONFIG: config file {config_file!r} does not exist")
    try:
        secrets_dir = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR") or None
        return Settings(_secrets_dir=secrets_dir, **overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = setting_env_name(err["loc"])
            dotted = ".".join(str(p) for p in err["loc"])
            got = err.get("input")
            shown = "<secret>" if any(s in dotted.lower() for s in ("url", "token", "key")) else repr(got)
            if err["type"] == "extra_forbidden":
                lines.append(f"{name} ({dotted}): unknown setting")
            else:
                lines.append(f"{name} ({dotted}): {err['msg']}; got {shown}")
        source = f" (config file {config_file})" if config_file else ""
        raise ConfigError("invalid settings" + source + ":\n  " + "\n  ".join(lines)) from None
    except SettingsError as exc:  # a list or table setting in the environment that is not JSON
        raise ConfigError(env_parse_error(str(exc), dict(os.environ))) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(f"{ENV_PREFIX}CONFIG: cannot read {config_file!r}: {exc}") from None


def env_parse_error(message: str, environ: dict[str, str]) -> str:
    """Name the variables behind pydantic-settings' 'error parsing value for field X': list and table
    settings take JSON, and a plain value there (``BTC/USDT``) is the usual mistake."""
    match = re.search(r'field "([^"]+)"', message)
    section = match.group(1) if match else ""
    prefix = f"{ENV_PREFIX}{section.upper()}__"
    suspects = []
    for name, value in sorted(environ.items()):
        if name.upper().startswith(prefix):
            try:
                json.loads(value)
            except ValueError:
                suspects.append(name)
    where = ", ".join(suspects) or f"{prefix}..."
    return (
        f"{where}: cannot parse the value as JSON (list and table settings take JSON, e.g. "
        f"{suspects[0] if suspects else prefix + 'X'}='[\"BTC/USDT\"]')"
    )
