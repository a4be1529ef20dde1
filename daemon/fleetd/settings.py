"""Configuration: a TOML file overridden by FLEET_* environment variables, validated once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from fleetd.mqtt.topics import subscription_filters
from fleetsvc.secrets import mask_url
from fleetsvc.settings_fields import (
    CompactAfterDays,
    ConfigError,
    DatabaseUrl,
    LogFormat,
    LogLevel,
    OnOff,
    ProgramSettings,
    environment_warnings,
    host_port,
    load,
    mqtt_url,
)

__all__ = ["ConfigError", "Settings", "environment_warnings", "load_settings"]


class Settings(ProgramSettings):
    """Every knob of fleetd. Environment variable = FLEET_ + upper-case field name."""

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    database_url: DatabaseUrl = "postgresql://127.0.0.1:5432/fleet"
    client_id: str = Field(default="fleetd", min_length=1, max_length=64)
    flush_interval_ms: int = Field(default=1000, ge=10, le=60_000)
    # A batch is also written once nothing more has arrived for this long: a broker that allows
    # few unacknowledged messages then waits one commit, not a flush interval. 0 turns it off.
    flush_idle_ms: int = Field(default=2, ge=0, le=60_000)
    batch_max_rows: int = Field(default=5000, ge=1, le=100_000)
    max_buffered_rows: int = Field(default=100_000, ge=1)
    db_writers: int = Field(default=2, ge=1, le=16)
    # A write with no answer for this long is given up, its connection terminated (ingest/flusher).
    db_write_timeout_s: float = Field(default=15.0, ge=1, le=600)
    max_future_s: int = Field(default=300, ge=0)
    max_past_days: int = Field(default=3650, ge=1)
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)
    mqtt_session_expiry_s: int = Field(default=7 * 86400, ge=60)
    mqtt_receive_maximum: int = Field(default=65535, ge=1, le=65535)
    mqtt_protocol: Literal["auto", "5", "3.1.1"] = "auto"
    mqtt_max_packet_bytes: int = Field(default=1 << 20, ge=1024, le=268_435_460)
    # Subscribe to gateways/+/telemetry too. A broker refusing it leaves the device topics
    # ingested (fleetd.mqtt.subscriber); off leaves it out, e.g. where no gateway publishes.
    mqtt_gateways: OnOff = "on"
    share_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    http_addr: str = "127.0.0.1:9108"
    # HTTP ingest (fleetd.ops.ingest_http): off unless an address is given; needs a tokens file.
    ingest_http_addr: str = "off"
    ingest_tokens_file: Path | None = None
    ingest_tls_cert: Path | None = None
    ingest_tls_key: Path | None = None
    ingest_max_items: int = Field(default=5000, ge=1, le=100_000)
    ingest_max_body_bytes: int = Field(default=4 << 20, ge=1024, le=256 << 20)
    ingest_rate_per_token: float = Field(default=0.0, ge=0)  # readings/s; 0: no limit
    # Which devices each MQTT gateway may post for (fleetd.ingest.gateway_grants); unset: any.
    gateways_file: Path | None = None
    retention_days: int | None = Field(default=None, ge=1)
    rollup_retention_days: int | None = Field(default=None, ge=1)
    reject_retention_days: int | None = Field(default=None, ge=1)
    compact_after_days: CompactAfterDays = 2
    # The rollup fold (fleetd.folding): how often, and how long after a bucket's end.
    fold_interval_s: float = Field(default=60.0, ge=0.1, le=3600)
    fold_grace_s: float = Field(default=120.0, ge=0, le=3600)  # 0 leaves it to `fleetctl compact`
    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"

    @field_validator("mqtt_url", mode="before")
    @classmethod
    def _mqtt_url_list(cls, value: object) -> object:
        # The nodes of a broker cluster: a TOML list, or comma-separated in FLEET_MQTT_URL.
        if isinstance(value, list | tuple):
            return ",".join(str(url) for url in value)
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        urls = [url.strip() for url in value.split(",") if url.strip()]
        if not urls:
            raise ValueError("names no broker")
        for n, url in enumerate(urls, 1):
            try:
                mqtt_url(url)
            except ValueError as exc:
                where = f"broker {n} of {len(urls)} " if len(urls) > 1 else ""
                raise ValueError(f"{where}{exc}") from None
        return ",".join(urls)

    @property
    def mqtt_topic_filters(self) -> tuple[str, ...]:
        """The filters fleetd subscribes to (what the broker must let its login read)."""
        devices, gateway = subscription_filters(
            share_group=self.share_group, gateways=self.mqtt_gateways == "on"
        )
        return (*devices, *([gateway] if gateway else []))

    @property
    def mqtt_urls(self) -> tuple[str, ...]:
        """The broker nodes fleetd rotates through (one unless a cluster is listed)."""
        return tuple(self.mqtt_url.split(","))

    @field_validator("http_addr", "ingest_http_addr")
    @classmethod
    def _http_addr(cls, value: str) -> str:
        if value in ("", "off"):
            return value  # the ops HTTP server is disabled
        try:
            return host_port(value, "127.0.0.1:9108")
        except ValueError as exc:
            raise ValueError(f"{exc}, or off") from None

    @model_validator(mode="after")
    def _ingest_http(self) -> Settings:
        if self.ingest_http_addr not in ("", "off") and self.ingest_tokens_file is None:
            raise ValueError(
                "FLEET_INGEST_HTTP_ADDR needs FLEET_INGEST_TOKENS_FILE (who may post readings)"
            )
        if bool(self.ingest_tls_cert) != bool(self.ingest_tls_key):
            raise ValueError("FLEET_INGEST_TLS_CERT and FLEET_INGEST_TLS_KEY go together")
        return self

    @model_validator(mode="after")
    def _rollups_outlive_history(self) -> Settings:
        raw, rollups = self.retention_days, self.rollup_retention_days
        if raw and rollups and rollups < raw:
            # Reports over old windows read rollups; dropping them first would leave raw rows
            # that no rollup covers.
            raise ValueError("rollup_retention_days must be >= retention_days")
        return self

    def masked(self) -> dict[str, Any]:
        """The effective settings with credentials masked, for check-config and logs."""
        # JSON types (a Path as its text): check-config prints this with json.dumps.
        data = self.model_dump(mode="json")
        data["mqtt_url"] = ",".join(mask_url(url) for url in self.mqtt_urls)
        data["database_url"] = mask_url(self.database_url)
        # Derived, not a setting: what fleetd subscribes to, for the broker's ACL.
        data["mqtt_topic_filters"] = list(self.mqtt_topic_filters)
        return data


def load_settings(config_path: Path | None = None, **overrides: Any) -> Settings:
    """Load settings from an optional TOML file, then the environment, then `overrides`.

    Raises ConfigError with a one-line message naming the bad setting.
    """
    return load(Settings, config_path, "fleetd", overrides)
