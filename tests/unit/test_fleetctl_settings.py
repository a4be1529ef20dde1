"""fleetctl's settings: a TOML file overridden by FLEET_* variables, one parser per variable
shared with fleetd, one-line errors with exit 2 naming the variable, unknown variables
reported, and check-config with every credential masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleetctl.cli import main
from fleetctl.roles import Role
from fleetctl.settings import ConfigError, Settings, load_settings
from fleetd.settings import Settings as FleetdSettings
from fleetd.settings import load_settings as load_fleetd_settings
from fleetsvc.settings_fields import FLEET_VARIABLES, unknown_variables

HARNESS = {"FLEET_MOSQUITTO_CONF", "FLEET_TEST_DATABASE_URL", "FLEET_TEST_DOCKER"}
HARNESS |= {"FLEET_TEST_MQTT_URL"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FLEET_"):
            monkeypatch.delenv(name)


def test_the_file_is_overridden_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "fleetctl.toml"
    cfg.write_text(
        '[fleetctl]\nanalytics_database_url = "postgresql://file@db/fleet"\n'
        'alert_webhooks = ["https://a.example/h"]\nalert_interval_s = 60\n'
    )
    monkeypatch.setenv("FLEET_ALERT_INTERVAL_S", "30")
    s = load_settings(cfg)
    assert s.database_for(Role.ANALYTICS) == "postgresql://file@db/fleet"
    assert (s.alert_interval_s, s.alert_webhooks) == (30.0, ("https://a.example/h",))
    monkeypatch.setenv("FLEET_ALERT_WEBHOOKS", "https://b.example/h, https://c.example/h")
    assert load_settings(cfg).alert_config().channels == (
        "https://b.example/h",
        "https://c.example/h",
    )


def test_each_role_reads_its_own_variable_then_the_owners(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="set FLEET_ANALYTICS_DATABASE_URL"):
        Settings().database_for(Role.ANALYTICS)
    with pytest.raises(ConfigError, match="set FLEET_ADMIN_DATABASE_URL"):
        Settings().database_for(Role.ADMIN)
    monkeypatch.setenv("FLEET_DATABASE_URL", "postgresql://owner@db/fleet")
    monkeypatch.setenv("FLEET_ADMIN_DATABASE_URL", "postgresql://admin@db/fleet")
    s = Settings()
    assert s.database_for(Role.ANALYTICS) == "postgresql://owner@db/fleet"
    assert s.database_for(Role.ADMIN) == "postgresql://admin@db/fleet"
    assert s.database_for(Role.OWNER) == "postgresql://owner@db/fleet"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FLEET_LOG_LEVEL", "verbose", "invalid FLEET_LOG_LEVEL (log_level): Input should be"),
        ("FLEET_LOG_FORMAT", "xml", "invalid FLEET_LOG_FORMAT"),
        ("FLEET_COMPACT_AFTER_DAYS", "-1", "invalid FLEET_COMPACT_AFTER_DAYS"),
        ("FLEET_DATABASE_URL", "postgresql://u:pw@db:99999/f", "has a bad port"),
        ("FLEET_ANALYTICS_DATABASE_URL", "mysql://db/f", "invalid FLEET_ANALYTICS_DATABASE_URL"),
        ("FLEET_API_ADDR", "nowhere", "invalid FLEET_API_ADDR"),
        ("FLEET_API_ADDR", "[::1", "invalid FLEET_API_ADDR"),
        ("FLEET_API_TOKEN", "short", "at least 16 characters"),
        ("FLEET_ALERT_INTERVAL_S", "0", "invalid FLEET_ALERT_INTERVAL_S"),
        ("FLEET_ALERT_WEBHOOKS", "ftp://x", "invalid FLEET_ALERT_WEBHOOKS"),
        ("FLEET_ALERT_MQTT_URL", "http://x", "invalid FLEET_ALERT_MQTT_URL"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_with_exit_2(
    variable: str,
    value: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, value)
    for argv in (["check-config"], ["fleet"], ["serve"], ["alerts", "run"], ["compact"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("fleetctl: "), (argv, err)
        assert message in err, (argv, err)
        assert err.count("\n") == 1
        assert "pw" not in err


def test_the_missing_database_names_the_variable_the_command_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv, variable in (
        (["fleet"], "FLEET_ANALYTICS_DATABASE_URL"),
        (["assign", "V1", "M1"], "FLEET_ADMIN_DATABASE_URL"),
        (["alerts", "run"], "FLEET_ADMIN_DATABASE_URL"),
        (["rejects", "replay"], "FLEET_ADMIN_DATABASE_URL"),
        (["partitions", "list"], "FLEET_DATABASE_URL,"),
    ):
        assert main(argv) == 2
        assert f"no database: set {variable}" in capsys.readouterr().err


def test_compact_after_days_is_one_parser_for_fleetd_and_fleetctl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """0 means "fleetd does not compact" to both (fleetctl compact then takes every day the
    cold tier accepts); a negative number is refused by both in the same words."""
    monkeypatch.setenv("FLEET_COMPACT_AFTER_DAYS", "0")
    assert load_fleetd_settings(None).compact_after_days == 0
    assert load_settings(None).compact_after_days == 0
    monkeypatch.setenv("FLEET_COMPACT_AFTER_DAYS", "-2")
    with pytest.raises(ConfigError) as fleetd_error:
        load_fleetd_settings(None)
    with pytest.raises(ConfigError) as fleetctl_error:
        load_settings(None)
    assert str(fleetd_error.value) == str(fleetctl_error.value)


def test_an_unknown_variable_is_reported_with_the_closest_known_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEET_DATABSE_URL", "postgresql://elsewhere/db")
    monkeypatch.setenv("FLEET_ANALYTICS_DATABASE_URL", "postgresql://u@db/fleet")
    assert main(["check-config"]) == 0
    err = capsys.readouterr().err
    assert err == (
        "fleetctl: warning: unknown variable FLEET_DATABSE_URL is ignored "
        "(did you mean FLEET_DATABASE_URL?)\n"
    )


def test_the_known_variables_are_exactly_what_the_programs_read() -> None:
    fields = {*FleetdSettings.model_fields, *Settings.model_fields}
    assert {f"FLEET_{name.upper()}" for name in fields} | HARNESS == FLEET_VARIABLES
    assert unknown_variables({"FLEET_DB_WRITERS": "2", "PATH": "/bin", "FLEET_X": "1"}) == [
        "unknown variable FLEET_X is ignored"
    ]


def test_check_config_masks_every_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text('alert_webhooks = ["https://u:hookpw@hooks.example/x?token=tok"]\n')
    monkeypatch.setenv("FLEET_DATABASE_URL", "postgresql://db/fleet?password=hunter2")
    monkeypatch.setenv("FLEET_ADMIN_DATABASE_URL", "postgresql://a:adminpw@db/fleet")
    monkeypatch.setenv("FLEET_API_TOKEN", "a-token-of-twenty-chars")
    monkeypatch.setenv("FLEET_ALERT_MQTT_URL", "mqtt://alerts:mqttpw@broker:1883")
    assert main(["--config", str(cfg), "check-config"]) == 0
    out = capsys.readouterr().out
    for secret in ("hunter2", "adminpw", "a-token-of-twenty-chars", "mqttpw", "hookpw", "tok&"):
        assert secret not in out
    shown = json.loads(out)
    assert shown["configFile"] == str(cfg)
    assert shown["database_url"] == "postgresql://db/fleet?password=***"
    assert shown["api_token"] == "***"


def test_a_bad_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text("log_levl = 'debug'\n")
    assert main(["--config", str(cfg), "check-config"]) == 2
    assert capsys.readouterr().err == "fleetctl: unknown setting 'log_levl'\n"
    assert main(["--config", str(tmp_path / "none.toml"), "check-config"]) == 2
    assert "none.toml" in capsys.readouterr().err


def test_the_example_config_loads() -> None:
    s = load_settings(Path(__file__).resolve().parents[2] / "config" / "fleetctl.toml")
    assert s.database_for(Role.ADMIN).startswith("postgresql://dispatch@")
    assert s.alert_interval_s == 600


def _fleetd_check_config(**env: str) -> list[str]:
    """The stderr lines of `fleetd check-config` run with `env` and PATH alone."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "fleetd"), "check-config"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stderr.splitlines()


def test_fleetd_warns_about_an_unknown_variable_too() -> None:
    stderr = _fleetd_check_config(FLEET_DATABSE_URL="postgresql://elsewhere/db")
    assert stderr[0] == (
        "fleetd: warning: unknown variable FLEET_DATABSE_URL is ignored "
        "(did you mean FLEET_DATABASE_URL?)"
    )


def test_a_listening_address_and_a_port_out_of_range_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://u@127.0.0.1:1/none"
    assert main(["--database-url", url, "serve", "--addr", "nowhere"]) == 2
    assert capsys.readouterr().err == "fleetctl: --addr: must be host:port (e.g. 127.0.0.1:9109)\n"
    monkeypatch.setenv("FLEET_DATABASE_URL", "postgresql://u:pw@db:70000/fleet")
    with pytest.raises(ConfigError, match=r"FLEET_DATABASE_URL .* has a bad port") as bad:
        load_fleetd_settings(None)
    assert "pw" not in str(bad.value)


def test_fleetd_says_which_database_it_uses_when_none_is_set() -> None:
    assert _fleetd_check_config(FLEET_DATABASE_URL_="typo")[:2] == [
        "fleetd: warning: unknown variable FLEET_DATABASE_URL_ is ignored "
        "(did you mean FLEET_DATABASE_URL?)",
        "fleetd: warning: FLEET_DATABASE_URL is not set: using postgresql://127.0.0.1:5432/fleet",
    ]
