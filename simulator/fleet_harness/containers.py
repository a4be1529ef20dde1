"""Opt-in alternative to the local binaries: PostgreSQL and Mosquitto in Docker containers via
testcontainers (FLEET_TEST_DOCKER=1 and a Docker engine that answers). Untested on our own
machines, which have no Docker engine; the binaries in temp dirs are the default everywhere."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fleet_harness.mosquitto import REPO_ROOT


def docker_requested() -> bool:
    """FLEET_TEST_DOCKER=1 is set and a Docker engine answers."""
    if os.environ.get("FLEET_TEST_DOCKER") != "1":
        return False
    try:
        import docker  # type: ignore[import-untyped]  # noqa: PLC0415 - opt-in only

        docker.from_env().ping()
    except Exception:  # no engine, no client, no permission: all mean "no"
        return False
    return True


@contextmanager
def postgres_container() -> Iterator[str]:
    """PostgreSQL 16 in a container; yields its URL."""
    from testcontainers.community.postgres import PostgresContainer  # noqa: PLC0415

    with PostgresContainer("postgres:16", driver=None) as pg:
        yield str(pg.get_connection_url())


@contextmanager
def mosquitto_container() -> Iterator[str]:
    """Mosquitto 2.0 with the repo's settings (anonymous, for tests); yields its URL."""
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415
    from testcontainers.core.waiting_utils import wait_for_logs  # noqa: PLC0415

    keep = [
        line
        for line in (REPO_ROOT / "mosquitto.conf").read_text().splitlines()
        if line.split()[:1]
        and line.split()[0] not in ("listener", "password_file", "acl_file", "allow_anonymous")
    ]
    conf_dir = Path(tempfile.mkdtemp(prefix="fleet-mqtt-conf-"))
    (conf_dir / "mosquitto.conf").write_text(
        "\n".join([*keep, "listener 1883", "allow_anonymous true", ""])
    )
    container = (
        DockerContainer("eclipse-mosquitto:2.0")
        .with_exposed_ports(1883)
        .with_volume_mapping(str(conf_dir), "/mosquitto/config")
    )
    with container as mq:
        wait_for_logs(mq, "running")
        yield f"mqtt://{mq.get_container_host_ip()}:{mq.get_exposed_port(1883)}"
