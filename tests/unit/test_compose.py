"""docker-compose.yml and Dockerfile: the services, images and ports the README promises, and
every FLEET_* variable they set is a real setting (a typo would be silently ignored)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fleetctl.settings import Settings as FleetctlSettings
from fleetd.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
FLEET_VAR = re.compile(r"\bFLEET_[A-Z0-9_]+\b")


def _fields() -> set[str]:
    names = {*Settings.model_fields, *FleetctlSettings.model_fields}
    return {f"FLEET_{name.upper()}" for name in names}


def test_every_fleet_variable_is_a_setting() -> None:
    for path in (COMPOSE, DOCKERFILE):
        used = set(FLEET_VAR.findall(path.read_text()))
        assert used, path
        assert used <= _fields(), (path.name, used - _fields())


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert re.search(r"^RUN pip install \.", text, re.MULTILINE)
    user = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user
    assert not user[-1].startswith(("root", "0")), user
    assert "COPY sql" in text  # migrations ship in the wheel


def test_compose_structure() -> None:
    import yaml  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert set(services) == {"mosquitto", "postgres", "fleetd", "api", "simulator"}
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2.0"
    assert services["postgres"]["image"] == "postgres:16"
    assert services["fleetd"]["build"] == "."
    assert "1883:1883" in services["mosquitto"]["ports"]
    assert "5432:5432" in services["postgres"]["ports"]
    assert "9108:9108" in services["fleetd"]["ports"]
    mounts = " ".join(services["mosquitto"]["volumes"])
    assert "./mosquitto.conf:" in mounts
    assert "./config/mosquitto.acl:" in mounts
    assert "POSTGRES_PASSWORD" in services["postgres"]["environment"]
    env = services["fleetd"]["environment"]
    assert {"FLEET_MQTT_URL", "FLEET_DATABASE_URL"} <= set(env)
    assert env["FLEET_HTTP_ADDR"] == "0.0.0.0:9108"
    assert "fleetd migrate" in " ".join(services["fleetd"]["command"])
    assert "fleetd run" in " ".join(services["fleetd"]["command"])
    deps = services["fleetd"]["depends_on"]
    assert deps["mosquitto"]["condition"] == "service_healthy"
    assert deps["postgres"]["condition"] == "service_healthy"
    for name in ("mosquitto", "postgres", "fleetd"):
        assert "test" in services[name]["healthcheck"], name
    api = services["api"]
    assert api["command"] == ["fleetctl", "serve"]
    assert api["environment"]["FLEET_API_ADDR"] == "0.0.0.0:9109"
    assert "FLEET_ANALYTICS_DATABASE_URL" in api["environment"]
    assert "9109:9109" in api["ports"]
    assert "test" in api["healthcheck"]
    sim = services["simulator"]
    assert sim["profiles"] == ["simulator"]
    assert sim["command"][:2] == ["fleet-sim", "run"]
    assert "--speed" in sim["command"]
    assert "FLEET_MQTT_URL" in sim["environment"]
    assert "FLEET_DATABASE_URL" in sim["environment"]  # it writes the assignments
