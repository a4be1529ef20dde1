"""What fleetctl's programs read from the environment: `fleetctl serve`'s listening address,
token and TLS, `fleetctl alerts run`'s evaluation and delivery, `fleetctl compact`'s default
day (fleetd's own settings are fleetd.settings.Settings)."""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fleetctl.alerts.evaluation import AlertConfig
from fleetctl.errors import AnalyticsError
from fleetsvc.http import parse_addr

DEFAULT_API_ADDR = "127.0.0.1:9109"
# What fleetctl reads from the environment (fleetd's own settings are fleetd.settings.Settings).
ENVIRONMENT = ("FLEET_DATABASE_URL", "FLEET_ANALYTICS_DATABASE_URL", "FLEET_ADMIN_DATABASE_URL",
               "FLEET_API_ADDR",
               "FLEET_API_TOKEN", "FLEET_API_TOKEN_FILE", "FLEET_API_TLS_CERT",
               "FLEET_API_TLS_KEY", "FLEET_LOG_FORMAT", "FLEET_LOG_LEVEL")  # fmt: skip


class ServeConfigError(Exception):
    """A bad or missing setting of `fleetctl serve`; the message names it in one line."""


@dataclass(frozen=True)
class ServeConfig:
    """Where to listen, what to read, and how callers prove who they are."""

    addr: str
    database_url: str
    token: str | None
    tls: ssl.SSLContext | None
    admin_url: str | None = None

    def __repr__(self) -> str:  # never the token
        return f"ServeConfig(addr={self.addr!r}, token={'set' if self.token else None})"

    @classmethod
    def load(cls, env: Mapping[str, str], *, addr: str | None, database_url: str) -> ServeConfig:
        """From the environment (FLEET_API_*); raises ServeConfigError."""
        addr = addr or env.get("FLEET_API_ADDR") or DEFAULT_API_ADDR
        try:
            bind = parse_addr(addr)
        except ValueError as exc:
            raise ServeConfigError(f"FLEET_API_ADDR: {exc}") from exc
        if bind is None:
            raise ServeConfigError("FLEET_API_ADDR: fleetctl serve needs an address to listen on")
        token = _token(env)
        if token is None and not _loopback(bind[0]):
            raise ServeConfigError(
                f"FLEET_API_ADDR {addr} is not loopback: set FLEET_API_TOKEN (or "
                "FLEET_API_TOKEN_FILE) so /v1 asks for it, or listen on 127.0.0.1"
            )
        return cls(addr, database_url, token, _tls(env), env.get("FLEET_ADMIN_DATABASE_URL"))


def _token(env: Mapping[str, str]) -> str | None:
    path = env.get("FLEET_API_TOKEN_FILE")
    if path:
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise ServeConfigError(f"FLEET_API_TOKEN_FILE {path}: {exc.strerror}") from exc
        if not token:
            raise ServeConfigError(f"FLEET_API_TOKEN_FILE {path} is empty")
        return token
    token = env.get("FLEET_API_TOKEN", "").strip()
    if env.get("FLEET_API_TOKEN") is not None and not token:
        raise ServeConfigError("FLEET_API_TOKEN is set but empty")
    if token and len(token) < 16:
        raise ServeConfigError("FLEET_API_TOKEN must be at least 16 characters")
    return token or None


def _tls(env: Mapping[str, str]) -> ssl.SSLContext | None:
    cert, key = env.get("FLEET_API_TLS_CERT"), env.get("FLEET_API_TLS_KEY")
    if not cert and not key:
        return None
    if not cert or not key:
        raise ServeConfigError("FLEET_API_TLS_CERT and FLEET_API_TLS_KEY go together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ServeConfigError(f"FLEET_API_TLS_CERT/KEY: {exc}") from exc
    return ctx


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def alert_config(env: Mapping[str, str]) -> AlertConfig:
    """FLEET_ALERT_INTERVAL_S (600), FLEET_ALERT_WINDOW_HOURS (24),
    FLEET_ALERT_OFFLINE_INTERVALS (10), FLEET_ALERT_MQTT_URL (set: deliver over MQTT),
    FLEET_ALERT_WEBHOOKS (comma-separated URLs)."""
    try:
        interval = float(env.get("FLEET_ALERT_INTERVAL_S", "600"))
        window = float(env.get("FLEET_ALERT_WINDOW_HOURS", "24"))
        offline = int(env.get("FLEET_ALERT_OFFLINE_INTERVALS", "10"))
    except ValueError as exc:
        raise AnalyticsError(f"alert settings: {exc}") from None
    if interval <= 0 or window <= 0 or offline < 1:
        raise AnalyticsError("alert settings: interval and window must be > 0, offline >= 1")
    hooks = tuple(u.strip() for u in env.get("FLEET_ALERT_WEBHOOKS", "").split(",") if u.strip())
    for u in hooks:
        if not u.startswith(("http://", "https://")):
            raise AnalyticsError(f"FLEET_ALERT_WEBHOOKS: not an http(s) URL: {u!r}")
    mqtt = ("mqtt",) if env.get("FLEET_ALERT_MQTT_URL") else ()
    return AlertConfig(interval_s=interval, window_h=window, offline_intervals=offline,
                       channels=mqtt + hooks)  # fmt: skip


def compact_after_days() -> int:
    """FLEET_COMPACT_AFTER_DAYS (2): `fleetctl compact`'s default is the days before that many
    days ago."""
    text = os.environ.get("FLEET_COMPACT_AFTER_DAYS", "2")
    try:
        return int(text)
    except ValueError:
        raise AnalyticsError(f"FLEET_COMPACT_AFTER_DAYS: not a whole number: {text!r}") from None
