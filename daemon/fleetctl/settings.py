"""Every setting of fleetctl's programs (the reports, `serve`, `alerts run`, `compact`): a TOML
file overridden by FLEET_* environment variables, validated once, as fleetd does
(fleetd.settings). A variable both read (database URL, log level and format,
compact_after_days) has one parser, in fleetsvc.settings_fields.

The file: `--config PATH`, else /etc/fleet-telemetry/fleetctl.toml when it exists; its keys are
the variables' names without FLEET_ in lower case, at the top level or under [fleetctl].
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from fleetctl.roles import Role
from fleetsvc.secrets import mask_url
from fleetsvc.settings_fields import (
    CompactAfterDays,
    ConfigError,
    DatabaseUrl,
    HostPort,
    LogFormat,
    LogLevel,
    MqttUrl,
    ProgramSettings,
    check_host_port,
    environment_warnings,
    load,
)
from fleetsvc.web.tls import TlsPairError, server_context

if TYPE_CHECKING:
    from fleetctl.alerts.evaluation import AlertConfig

__all__ = [
    "DEFAULT_CONFIG",
    "ConfigError",
    "Role",
    "ServeConfig",
    "Settings",
    "environment_warnings",
    "load_settings",
]

DEFAULT_CONFIG = Path("/etc/fleet-telemetry/fleetctl.toml")
DEFAULT_API_ADDR = "127.0.0.1:9109"
_MIN_TOKEN_CHARS = 16


class Settings(ProgramSettings):
    """fleetctl's settings. Environment variable = FLEET_ + upper-case field name."""

    # The schema owner's URL, and the fallback of the two below.
    database_url: DatabaseUrl | None = None
    analytics_database_url: DatabaseUrl | None = None
    admin_database_url: DatabaseUrl | None = None
    api_addr: HostPort = DEFAULT_API_ADDR
    api_token: SecretStr | None = None
    api_token_file: Path | None = None
    api_tls_cert: Path | None = None
    api_tls_key: Path | None = None
    # The longest window a /v1 report may cover (a longer one is a 400): bounds its cost.
    api_max_window_days: float = Field(default=31.0, gt=0, le=3660)
    alert_interval_s: float = Field(default=600.0, gt=0, le=86_400)
    alert_window_hours: float = Field(default=24.0, gt=0, le=24 * 366)
    alert_offline_intervals: int = Field(default=10, ge=1)
    # soc_stalled opens only after this many consecutive evaluations saw it (replayed data and
    # one odd hour must not page).
    alert_soc_stalled_evaluations: int = Field(default=3, ge=1, le=1000)
    alert_mqtt_url: MqttUrl | None = None
    # Comma-separated in the environment, a list in the file.
    alert_webhooks: Annotated[tuple[str, ...], NoDecode] = ()
    compact_after_days: CompactAfterDays = 2
    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"

    @field_validator("alert_webhooks", mode="before")
    @classmethod
    def _split_webhooks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(u.strip() for u in value.split(",") if u.strip())
        return value

    @field_validator("alert_webhooks")
    @classmethod
    def _webhooks_are_http(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"not an http(s) URL: {mask_url(url)!r}")
        return value

    @field_validator("api_token")
    @classmethod
    def _token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if not token:
            raise ValueError("is set but empty")
        if len(token) < _MIN_TOKEN_CHARS:
            raise ValueError(f"must be at least {_MIN_TOKEN_CHARS} characters")
        return SecretStr(token)

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if bool(self.api_tls_cert) != bool(self.api_tls_key):
            raise ValueError("FLEET_API_TLS_CERT and FLEET_API_TLS_KEY go together")
        return self

    def database_for(self, role: Role) -> str:
        """The URL of `role`'s login (FLEET_DATABASE_URL when the role has none of its own);
        ConfigError naming the variable to set when there is none."""
        own = {
            Role.ANALYTICS: self.analytics_database_url,
            Role.ADMIN: self.admin_database_url,
            Role.OWNER: None,
        }[role]
        url = own or self.database_url
        if url is None:
            fallback = "" if role is Role.OWNER else " (or FLEET_DATABASE_URL)"
            raise ConfigError(f"no database: set {role.variable}{fallback}, or pass --database-url")
        return url

    def alert_config(self) -> AlertConfig:
        """What `alerts run` evaluates, how often, and where it delivers."""
        from fleetctl.alerts.evaluation import AlertConfig  # noqa: PLC0415  (loads the reports)

        mqtt = ("mqtt",) if self.alert_mqtt_url else ()
        return AlertConfig(
            interval_s=self.alert_interval_s,
            window_h=self.alert_window_hours,
            offline_intervals=self.alert_offline_intervals,
            soc_stalled_evaluations=self.alert_soc_stalled_evaluations,
            channels=mqtt + self.alert_webhooks,
        )

    def masked(self) -> dict[str, Any]:
        """The effective settings with credentials masked, for check-config."""
        data = self.model_dump(mode="json")
        for key in ("database_url", "analytics_database_url", "admin_database_url"):
            if data[key]:
                data[key] = mask_url(data[key])
        if self.alert_mqtt_url:
            data["alert_mqtt_url"] = mask_url(self.alert_mqtt_url)
        data["alert_webhooks"] = [mask_url(u) for u in self.alert_webhooks]
        data["api_token"] = "***" if self.api_token else None
        return data


def load_settings(config_path: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the TOML file (`config_path`, else DEFAULT_CONFIG if it exists), then the
    environment, then `overrides` (command-line options). Raises ConfigError in one line."""
    if config_path is None and DEFAULT_CONFIG.is_file():
        config_path = DEFAULT_CONFIG
    return load(Settings, config_path, "fleetctl", overrides)


def colour_wanted(isatty: bool) -> bool:
    """Colour on a terminal unless NO_COLOR is set (https://no-color.org)."""
    return isatty and "NO_COLOR" not in os.environ


@dataclass(frozen=True)
class ServeConfig:
    """`fleetctl serve`: where to listen, what to read, and how callers prove who they are."""

    addr: str
    database_url: str
    token: str | None
    tls: ssl.SSLContext | None
    admin_url: str | None = None
    max_window_days: float = 31.0

    def __repr__(self) -> str:  # never the token
        return f"ServeConfig(addr={self.addr!r}, token={'set' if self.token else None})"

    @classmethod
    def from_settings(
        cls, settings: Settings, *, database_url: str, addr: str | None = None
    ) -> ServeConfig:
        """From the settings (`addr`: --addr; `database_url`: the analytics login's, or
        --database-url); raises ConfigError naming the variable."""
        addr = check_host_port(addr, "--addr") if addr else settings.api_addr
        host = addr.rpartition(":")[0].strip("[]")
        token = _token(settings)
        if token is None and not _loopback(host):
            raise ConfigError(
                f"FLEET_API_ADDR {addr} is not loopback: set FLEET_API_TOKEN (or "
                "FLEET_API_TOKEN_FILE) so /v1 asks for it, or listen on 127.0.0.1"
            )
        return cls(
            addr,
            database_url,
            token,
            _tls(settings),
            settings.admin_database_url,
            settings.api_max_window_days,
        )


def _token(settings: Settings) -> str | None:
    path = settings.api_token_file
    if path is not None:
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"FLEET_API_TOKEN_FILE {path}: {exc.strerror}") from exc
        if not token:
            raise ConfigError(f"FLEET_API_TOKEN_FILE {path} is empty")
        return token
    return settings.api_token.get_secret_value() if settings.api_token else None


def _tls(settings: Settings) -> ssl.SSLContext | None:
    try:
        return server_context(settings.api_tls_cert, settings.api_tls_key)
    except TlsPairError as exc:
        raise ConfigError(f"FLEET_API_TLS_CERT/KEY: {exc}") from exc


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
