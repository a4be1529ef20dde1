"""The settings fleetd and fleetctl share, each parsed by one type here: a variable means the
same to every program that reads it (FLEET_COMPACT_AFTER_DAYS=0, FLEET_LOG_LEVEL=verbose, a
database URL with a bad port). Also what every program's settings do alike: the TOML file, the
one-line message for a bad value, and the unknown FLEET_* variables."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it in one line."""


def _port_ok(url: str, *, multi_host: bool = False) -> None:
    # `multi_host`: libpq's postgresql://u@h1:p1,h2:p2/db, each host with its own port.
    hosts = urlsplit(url).netloc.rpartition("@")[2]
    try:
        for host in hosts.split(",") if multi_host else [hosts]:
            _ = urlsplit(f"//{host}").port  # ValueError: out of range or not a number
    except ValueError as exc:
        raise ValueError(f"has a bad port: {exc}") from None


def _database_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("must be a postgresql:// URL")
    if "@" in parts.netloc.rpartition("@")[0]:
        # libpq and asyncpg end the user and password at the first @: the rest would be taken
        # for a host name ("Name or service not known").
        raise ValueError("has an @ in its user or password: write it as %40")
    _port_ok(value, multi_host=True)
    return value


def mqtt_url(value: str) -> str:
    """The rule of one broker URL (mqtt:// or mqtts://, a host, a port in range); ValueError
    saying what is wrong."""
    parts = urlsplit(value)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError("must look like mqtt://[user:pass@]host:port or mqtts://...")
    _port_ok(value)
    return value


def host_port(value: str, example: str = "127.0.0.1:9109") -> str:
    """The rule of a listening address, host:port ([v6]:port); ValueError naming `example`."""
    host, sep, port = value.rpartition(":")
    brackets_paired = host.startswith("[") == host.endswith("]")
    if not sep or not host or not brackets_paired or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"must be host:port (e.g. {example})")
    return value


def check_database_url(value: str, where: str) -> str:
    """A database URL given outside the settings (a command-line option), checked by the same
    rule; ConfigError naming `where`."""
    try:
        return _database_url(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_host_port(value: str, where: str) -> str:
    """A listening address given outside the settings (--addr), checked by the same rule."""
    try:
        return host_port(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


DatabaseUrl = Annotated[str, AfterValidator(_database_url)]
"""A libpq URL, postgresql:// (multi-host and ?options as libpq takes them)."""
MqttUrl = Annotated[str, AfterValidator(mqtt_url)]
"""mqtt://[user:pass@]host:port, or mqtts:// for TLS."""
HostPort = Annotated[str, AfterValidator(host_port)]
"""Where a server listens: host:port."""
LogFormat = Literal["auto", "json", "console"]
"""auto: JSON when stdout is not a terminal (journald), readable lines on one."""
LogLevel = Literal["debug", "info", "warning", "error"]


def _on_off(value: object) -> object:
    # A TOML true/false and the usual spellings of a switch, as on/off (check-config shows it).
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("on", "true", "yes", "1"):
            return "on"
        if word in ("off", "false", "no", "0"):
            return "off"
    return value


OnOff = Annotated[Literal["on", "off"], BeforeValidator(_on_off)]
"""A switch: on or off (also true/false, yes/no, 1/0)."""
CompactAfterDays = Annotated[int, Field(ge=0)]
"""Days are compacted into the cold tier this many days after they end. 0: fleetd never
compacts by itself, and `fleetctl compact` without --before takes every day it may (those
before yesterday)."""

# Every FLEET_* variable a program of this project reads: fleetd's and fleetctl's settings
# (tests/unit/test_fleetctl_settings.py checks this against both), and the test harness's own. A
# program warns about any other FLEET_* variable: a typo must not go unnoticed.
FLEET_VARIABLES = frozenset(
    {
        "FLEET_ADMIN_DATABASE_URL",
        "FLEET_ALERT_INTERVAL_S",
        "FLEET_ALERT_MQTT_URL",
        "FLEET_ALERT_OFFLINE_INTERVALS",
        "FLEET_ALERT_SOC_STALLED_EVALUATIONS",
        "FLEET_ALERT_WEBHOOKS",
        "FLEET_ALERT_WINDOW_HOURS",
        "FLEET_ANALYTICS_DATABASE_URL",
        "FLEET_API_ADDR",
        "FLEET_API_MAX_WINDOW_DAYS",
        "FLEET_API_TLS_CERT",
        "FLEET_API_TLS_KEY",
        "FLEET_API_TOKEN",
        "FLEET_API_TOKEN_FILE",
        "FLEET_BATCH_MAX_ROWS",
        "FLEET_CLIENT_ID",
        "FLEET_COMPACT_AFTER_DAYS",
        "FLEET_DATABASE_URL",
        "FLEET_DB_WRITERS",
        "FLEET_DB_WRITE_TIMEOUT_S",
        "FLEET_FLUSH_IDLE_MS",
        "FLEET_FOLD_GRACE_S",
        "FLEET_FOLD_INTERVAL_S",
        "FLEET_FLUSH_INTERVAL_MS",
        "FLEET_GATEWAYS_FILE",
        "FLEET_HTTP_ADDR",
        "FLEET_INGEST_HTTP_ADDR",
        "FLEET_INGEST_MAX_BODY_BYTES",
        "FLEET_INGEST_MAX_ITEMS",
        "FLEET_INGEST_RATE_PER_TOKEN",
        "FLEET_INGEST_TLS_CERT",
        "FLEET_INGEST_TLS_KEY",
        "FLEET_INGEST_TOKENS_FILE",
        "FLEET_LOG_FORMAT",
        "FLEET_LOG_LEVEL",
        "FLEET_MAX_BUFFERED_ROWS",
        "FLEET_MAX_FUTURE_S",
        "FLEET_MAX_PAST_DAYS",
        "FLEET_MQTT_GATEWAYS",
        "FLEET_MQTT_KEEPALIVE_S",
        "FLEET_MQTT_MAX_PACKET_BYTES",
        "FLEET_MQTT_PROTOCOL",
        "FLEET_MQTT_RECEIVE_MAXIMUM",
        "FLEET_MQTT_SESSION_EXPIRY_S",
        "FLEET_MQTT_URL",
        "FLEET_REJECT_RETENTION_DAYS",
        "FLEET_RETENTION_DAYS",
        "FLEET_ROLLUP_RETENTION_DAYS",
        "FLEET_SHARE_GROUP",
        # the test harness (simulator/fleet_harness, tests/conftest.py)
        "FLEET_MOSQUITTO_CONF",
        "FLEET_TEST_DATABASE_URL",
        "FLEET_TEST_DOCKER",
        "FLEET_TEST_MQTT_URL",
    }
)


def unknown_variables(
    environ: Mapping[str, str], known: Iterable[str] = FLEET_VARIABLES
) -> list[str]:
    """One line per FLEET_* variable no program reads, naming the closest known one."""
    names = sorted(set(known))
    lines = []
    for name in sorted(environ):
        if not name.upper().startswith("FLEET_") or name.upper() in names:
            continue
        close = difflib.get_close_matches(name.upper(), names, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"unknown variable {name} is ignored{hint}")
    return lines


def read_toml(path: Path, section: str) -> dict[str, Any]:
    """The settings of one program from a TOML file: its [section], or the top level when the
    file has none. Raises ConfigError naming the file."""
    try:
        values = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    section_values = values.get(section, values)
    if not isinstance(section_values, dict):
        raise ConfigError(f"config file {path}: [{section}] must be a table")
    return section_values


def config_error(exc: ValidationError, prefix: str = "FLEET_") -> ConfigError:
    """The first error of a settings model as one line naming the variable and the key."""
    err = exc.errors()[0]
    message = str(err["msg"]).removeprefix("Value error, ")
    if not err["loc"]:
        return ConfigError(f"invalid configuration: {message}")
    name = str(err["loc"][0])
    if err["type"] == "extra_forbidden":
        return ConfigError(f"unknown setting {name!r}")
    return ConfigError(f"invalid {prefix}{name.upper()} ({name}): {message}")


class ProgramSettings(BaseSettings):
    """Base of a program's settings: a frozen model of FLEET_* variables (FLEET_ + the field's
    name in upper case) over the TOML file's values; an unknown key is refused."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="forbid", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment overrides it.
        return (env_settings, init_settings)


S = TypeVar("S", bound=ProgramSettings)


def load(
    settings_cls: type[S], config_path: Path | None, section: str, overrides: Mapping[str, Any]
) -> S:
    """`settings_cls` from the TOML file's [section] (when `config_path` is given), then the
    environment, then `overrides` (command-line options). Raises ConfigError in one line."""
    values = read_toml(config_path, section) if config_path is not None else {}
    try:
        settings = settings_cls(**values)
        if overrides:
            settings = settings_cls.model_validate(settings.model_dump() | dict(overrides))
    except ValidationError as exc:
        raise config_error(exc) from exc
    return settings


def environment_warnings() -> list[str]:
    """The FLEET_* variables of this environment that no program reads (a typo would otherwise
    be silently ignored)."""
    return unknown_variables(os.environ)
