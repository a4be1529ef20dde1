"""docker-compose.yml and Dockerfile: the services, images and ports the README promises, and
every FLEET_* variable they set is a real setting (a typo would be silently ignored)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

from fleetd.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
FLEET_VAR = re.compile(r"\bFLEET_[A-Z0-9_]+\b")
HAVE_YAML = importlib.util.find_spec("yaml") is not None


def _fields() -> set[str]:
    return {f"FLEET_{name.upper()}" for name in Settings.model_fields}


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


@pytest.mark.skipif(not HAVE_YAML, reason="PyYAML not installed; see the line-based test")
def test_compose_structure() -> None:
    import yaml  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert set(services) == {"mosquitto", "postgres", "fleetd", "simulator"}
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
    sim = services["simulator"]
    assert sim["profiles"] == ["simulator"]
    assert sim["command"][:2] == ["fleet-sim", "run"]
    assert "--speed" in sim["command"]
    assert "FLEET_MQTT_URL" in sim["environment"]


def test_compose_lines() -> None:
    """The same facts without a YAML parser (PyYAML is not a dependency)."""
    text = COMPOSE.read_text()
    # The services section: from "services:" to the next top-level key.
    section = re.search(r"^services:\n(.*?)(?=^\S)", text, re.MULTILINE | re.DOTALL)
    assert section is not None
    header = re.compile(r"^  ([a-z][a-z0-9_-]*):\s*$", re.MULTILINE)
    services = header.findall(section.group(1))
    assert services == ["mosquitto", "postgres", "fleetd", "simulator"]
    blocks = dict(zip(services, header.split(section.group(1))[2::2], strict=True))
    assert re.search(r"^    image: eclipse-mosquitto:2\.0$", blocks["mosquitto"], re.MULTILINE)
    assert re.search(r"^    image: postgres:16$", blocks["postgres"], re.MULTILINE)
    assert re.search(r"^    build: \.$", blocks["fleetd"], re.MULTILINE)
    assert '"1883:1883"' in blocks["mosquitto"]
    assert '"5432:5432"' in blocks["postgres"]
    assert '"9108:9108"' in blocks["fleetd"]
    assert "./mosquitto.conf:" in blocks["mosquitto"]
    assert "./config/mosquitto.acl:" in blocks["mosquitto"]
    assert "FLEET_HTTP_ADDR: 0.0.0.0:9108" in blocks["fleetd"]
    assert "fleetd migrate && exec fleetd run" in blocks["fleetd"]
    assert blocks["fleetd"].count("condition: service_healthy") == 2
    assert 'profiles: ["simulator"]' in blocks["simulator"]
    assert '"fleet-sim", "run", "--speed", "60"' in blocks["simulator"]
    assert "FLEET_MQTT_URL:" in blocks["simulator"]
    # No tabs (YAML forbids them for indentation) and indentation in steps of two.
    assert "\t" not in text
    assert all((len(ln) - len(ln.lstrip(" "))) % 2 == 0 for ln in text.splitlines())
