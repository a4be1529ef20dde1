"""Configuration: TOML overridden by environment, one-line errors, masked secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fleetd.settings import ConfigError, load_settings
from fleetsvc.secrets import mask_url

FLEETD = str(Path(sys.executable).parent / "fleetd")
REPO = Path(__file__).resolve().parents[2]


def test_example_config_loads() -> None:
    s = load_settings(REPO / "config" / "fleetd.toml")
    assert s.flush_interval_ms == 1000
    assert s.client_id == "fleetd"


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text('[fleetd]\nbatch_max_rows = 10\nclient_id = "from-file"\n')
    monkeypatch.setenv("FLEET_CLIENT_ID", "from-env")
    s = load_settings(cfg)
    assert (s.batch_max_rows, s.client_id) == (10, "from-env")


def test_defaults_without_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_MQTT_URL", "mqtts://u:p@broker.example:8883")
    s = load_settings(None)
    assert (s.flush_interval_ms, s.batch_max_rows, s.max_buffered_rows) == (1000, 5000, 100000)
    assert s.mqtt_url.startswith("mqtts://")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLEET_FLUSH_INTERVAL_MS": "soon"}, "FLEET_FLUSH_INTERVAL_MS"),
        ({"FLEET_BATCH_MAX_ROWS": "0"}, "FLEET_BATCH_MAX_ROWS"),
        ({"FLEET_MQTT_URL": "http://x"}, "FLEET_MQTT_URL"),
        ({"FLEET_DATABASE_URL": "mysql://x"}, "FLEET_DATABASE_URL"),
        ({"FLEET_MQTT_URL": "mqtt://a:1,http://b"}, r"broker 2 of 2 must look like mqtt://"),
        ({"FLEET_HTTP_ADDR": "[::1"}, r"FLEET_HTTP_ADDR .*e\.g\. 127\.0\.0\.1:9108\), or off"),
    ],
)
def test_bad_value_names_the_setting(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=message):
        load_settings(None)


def test_a_multi_host_database_url_is_taken_as_documented(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/operations.md's failover URL: each host's port is checked on its own."""
    url = "postgresql://fleetd:pw@db1:5432,db2:5432/fleet?target_session_attrs=read-write"
    monkeypatch.setenv("FLEET_DATABASE_URL", url)
    assert load_settings(None).database_url == url
    monkeypatch.setenv("FLEET_DATABASE_URL", "postgresql://fleetd@db1:5432,db2:99999/fleet")
    with pytest.raises(ConfigError, match="has a bad port: Port out of range"):
        load_settings(None)


def test_an_at_sign_in_a_database_password_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncpg would take what follows the first @ for a host ("Name or service not known")."""
    monkeypatch.setenv("FLEET_DATABASE_URL", "postgresql://fleetd:p@ss@db/fleet")
    with pytest.raises(ConfigError, match="write it as %40") as bad:
        load_settings(None)
    assert "ss@db" not in str(bad.value)


def test_cli_bad_value_exits_nonzero_with_one_line() -> None:
    out = subprocess.run(
        [FLEETD, "check-config"],
        env={"FLEET_BATCH_MAX_ROWS": "-5"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert "FLEET_BATCH_MAX_ROWS" in out.stderr


def test_check_config_masks_secrets() -> None:
    out = subprocess.run(
        [FLEETD, "check-config"],
        env={
            "FLEET_MQTT_URL": "mqtt://fleetd:s3cret@127.0.0.1:1883",
            "FLEET_DATABASE_URL": "postgresql://ingest:hunter2@db:5432/fleet",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert "s3cret" not in out.stdout
    assert "hunter2" not in out.stdout
    shown = json.loads(out.stdout)
    assert shown["mqtt_url"] == "mqtt://fleetd:***@127.0.0.1:1883"
    assert shown["database_url"] == "postgresql://ingest:***@db:5432/fleet"


def test_mask_url_leaves_passwordless_urls_alone() -> None:
    assert mask_url("postgresql://fleet@127.0.0.1/fleet") == "postgresql://fleet@127.0.0.1/fleet"


def test_a_broker_cluster_is_a_toml_list_or_comma_separated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text('[fleetd]\nmqtt_url = ["mqtt://n1:1883", "mqtts://u:pw@n2:8883"]\n')
    s = load_settings(cfg)
    assert s.mqtt_urls == ("mqtt://n1:1883", "mqtts://u:pw@n2:8883")
    assert s.masked()["mqtt_url"] == "mqtt://n1:1883,mqtts://u:***@n2:8883"
    monkeypatch.setenv("FLEET_MQTT_URL", "mqtt://a:1, mqtt://b:2")
    assert load_settings(cfg).mqtt_urls == ("mqtt://a:1", "mqtt://b:2")
    monkeypatch.setenv("FLEET_MQTT_URL", "mqtt://a:1,http://u:pw@b:2")
    with pytest.raises(ConfigError, match="broker 2 of 2 must look like") as bad:
        load_settings(None)
    assert "pw" not in str(bad.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("on", "on"), ("off", "off"), ("OFF", "off"), ("false", "off"), ("1", "on"), ("no", "off")],
)
def test_mqtt_gateways_is_a_switch(
    value: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_MQTT_GATEWAYS", value)
    assert load_settings(None).mqtt_gateways == expected


def test_mqtt_gateways_from_toml_and_its_filters(tmp_path: Path) -> None:
    assert load_settings(None).mqtt_topic_filters == (
        "meters/+/telemetry",
        "vehicles/+/telemetry",
        "gateways/+/telemetry",
    )
    cfg = tmp_path / "f.toml"
    cfg.write_text('[fleetd]\nmqtt_gateways = false\nshare_group = "ingest"\n')
    s = load_settings(cfg)
    assert s.mqtt_gateways == "off"
    assert s.mqtt_topic_filters == (
        "$share/ingest/meters/+/telemetry",
        "$share/ingest/vehicles/+/telemetry",
    )
    with pytest.raises(
        ConfigError, match=r"FLEET_MQTT_GATEWAYS \(mqtt_gateways\): .*'on' or 'off'"
    ):
        load_settings(None, mqtt_gateways="sometimes")


def test_check_config_shows_the_gateway_switch_and_the_filters() -> None:
    out = subprocess.run(
        [FLEETD, "check-config"],
        env={"FLEET_MQTT_GATEWAYS": "off", "FLEET_DATABASE_URL": "postgresql://db/fleet"},
        capture_output=True,
        text=True,
        check=True,
    )
    shown = json.loads(out.stdout)
    assert shown["mqtt_gateways"] == "off"
    assert shown["mqtt_topic_filters"] == ["meters/+/telemetry", "vehicles/+/telemetry"]


def test_check_config_shows_the_files_it_reads(tmp_path: Path) -> None:
    # Paths are printed as text (json.dumps of a Path used to end check-config in a traceback).
    gateways, tokens = tmp_path / "gateways", tmp_path / "tokens"
    out = subprocess.run(
        [FLEETD, "check-config"],
        env={
            "FLEET_GATEWAYS_FILE": str(gateways),
            "FLEET_INGEST_TOKENS_FILE": str(tokens),
            "FLEET_DATABASE_URL": "postgresql://db/fleet",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    shown = json.loads(out.stdout)
    assert (shown["gateways_file"], shown["ingest_tokens_file"]) == (str(gateways), str(tokens))
