"""The README's operations quick start, run as written (issue 24: its fleetctl lines failed).

The block between `<!-- quick-start` and `<!-- /quick-start -->` runs line by line in bash with
the settings an operator exports (the URLs of a throwaway PostgreSQL and Mosquitto, the logins
the block itself creates). Its systemd lines are not run: in their place the test starts what
the units start, `fleetd run` as the fleetd login and `fleetctl serve` as grafana, and lets
fleet-sim (the devices) publish an hour of readings. Every other line must exit 0 and print no
traceback; then the CSV import runs again, as an operator repeating it would, and changes
nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from fleet_harness import PostgresServer
from fleet_harness.containers import docker_requested
from fleet_harness.ports import free_port, wait_for_port
from fleet_harness.postgres import find_pg_bin

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = Path(__file__).resolve().parents[2] / "README.md"
BIN = Path(sys.executable).parent
TOKEN = "quick-start-token-0123456789"
SYSTEMD = re.compile(r"^(sudo |systemctl )")
LINE_TIMEOUT_S = 60


def quick_start() -> list[str]:
    """The shell lines of the README's marked quick-start block (comments and blanks dropped)."""
    text = README.read_text()
    match = re.search(
        r"<!-- quick-start.*?-->\s*```sh\n(.*?)```\s*<!-- /quick-start -->", text, re.S
    )
    assert match, "README.md: no block between <!-- quick-start --> and <!-- /quick-start -->"
    return [
        line for line in match.group(1).splitlines() if line.strip() and not line.startswith("#")
    ]


def split_at_systemd(lines: list[str]) -> tuple[list[str], list[str]]:
    """(before the systemd lines, after them); the systemd lines are one run in between."""
    marks = [i for i, line in enumerate(lines) if SYSTEMD.match(line)]
    assert marks, "the quick start has no systemd lines: update this test"
    assert marks == list(range(marks[0], marks[-1] + 1)), "systemd lines are not contiguous"
    return lines[: marks[0]], lines[marks[-1] + 1 :]


def _as(url: str, user: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port}"))


@pytest.fixture
def own_cluster() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of this test's own: the block creates roles with fixed names, and
    roles are cluster-wide."""
    if os.environ.get("FLEET_TEST_DATABASE_URL") or docker_requested():
        pytest.skip("the quick start creates cluster-wide roles: it needs a cluster of its own")
    with PostgresServer() as server:
        yield server


def run_lines(lines: list[str], env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Each line in bash, as an operator types it: exit 0, no traceback. Their outputs."""
    outputs = {}
    for line in lines:
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", line],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=LINE_TIMEOUT_S,
            check=False,
        )
        said = f"{line}\n-> exit {done.returncode}\n{done.stdout}{done.stderr}"
        assert done.returncode == 0, said
        assert "Traceback" not in done.stderr, said
        outputs[line] = done.stdout
    return outputs


def wait_ready(port: int, fleetd: subprocess.Popen[bytes], log: Path) -> None:
    """Until fleetd's /readyz answers 200 (subscribed): readings published before are lost."""
    deadline = time.monotonic() + 60
    while True:
        assert fleetd.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        assert time.monotonic() < deadline, f"fleetd not ready after 60 s:\n{log.read_text()}"
        time.sleep(0.2)


def wait_written(port: int, messages: int) -> None:
    """Until fleetd has acked `messages` (each committed first): the reports see them all."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                health = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 503 while a flush is late: look again
            health = json.loads(exc.read())
        if health["acked"] >= messages:
            return
        assert time.monotonic() < deadline, f"fleetd did not write {messages} in 60 s: {health}"
        time.sleep(0.2)


def test_the_quick_start_lines_are_found() -> None:
    before, after = split_at_systemd(quick_start())
    assert before[0].startswith("fleetd migrate ")
    assert any(line.startswith("fleetctl assign --file fleet.csv") for line in after)


def test_the_readme_quick_start_passes_as_written(
    own_cluster: PostgresServer, mqtt_url: str, tmp_path: Path
) -> None:
    owner = own_cluster.url
    ops_port, api_port = free_port(), free_port()
    path = os.pathsep.join([str(BIN), str(Path(find_pg_bin("psql")).parent), os.environ["PATH"]])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "PG"))},
        "PATH": path,
        "FLEET_DATABASE_URL": owner,
        "FLEET_ANALYTICS_DATABASE_URL": _as(owner, "grafana"),
        "FLEET_ADMIN_DATABASE_URL": _as(owner, "dispatch"),
        "FLEET_API_TOKEN": TOKEN,
        "FLEET_HTTP_ADDR": f"127.0.0.1:{ops_port}",
        "FLEET_API_ADDR": f"127.0.0.1:{api_port}",
    }
    # The operator's CSV: the simulator's 50 vehicles, each at its own meter since January.
    (tmp_path / "fleet.csv").write_text(
        "vehicle_id,meter_id,valid_from\n"
        + "".join(f"VEHICLE-{i:05d},METER-{i:05d},2026-01-01T00:00:00Z\n" for i in range(1, 51))
    )
    before, after = split_at_systemd(quick_start())
    run_lines(before, env, tmp_path)

    # What `systemctl enable --now fleetd fleet-api` starts, configured as their env files say.
    log = (tmp_path / "services.log").open("wb")
    fleetd_env = {"FLEET_DATABASE_URL": _as(owner, "fleetd"), "FLEET_MQTT_URL": mqtt_url}
    fleetd = subprocess.Popen(
        [str(BIN / "fleetd"), "run"],
        env=env | fleetd_env | {"FLEET_LOG_FORMAT": "json"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    serve = subprocess.Popen(
        [str(BIN / "fleetctl"), "serve"],
        env=env | {"FLEET_LOG_FORMAT": "json"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(ops_port, fleetd, tmp_path / "services.log")
        wait_for_port(api_port)
        start = (datetime.now(UTC) - timedelta(hours=1, minutes=5)).replace(second=0)
        sim = subprocess.run(
            [
                str(BIN / "fleet-sim"),
                "run",
                "--meters",
                "50",
                "--vehicles",
                "50",
                "--mqtt-url",
                mqtt_url,
                "--invalid-rate",
                "0.02",
                "--burst",
                "--speed",
                "100000",
                "--start",
                start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "--sim-hours",
                "1",
            ],
            env={k: v for k, v in env.items() if not k.startswith("FLEET_")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert sim.returncode == 0, sim.stdout + sim.stderr

        wait_written(ops_port, 6000)
        first = run_lines(after, env, tmp_path)
        again = run_lines(
            [line for line in after if line.startswith("fleetctl assign")], env, tmp_path
        )
    finally:
        for proc in (serve, fleetd):
            proc.terminate()
            proc.wait(timeout=15)
        log.close()
    health = next(out for line, out in first.items() if "/healthz" in line)
    assert '"status"' in health
    imported = next(out for line, out in first.items() if line.startswith("fleetctl assign"))
    assert imported.startswith("imported 50 assignments of 50 vehicles")
    repeated = next(out for line, out in again.items() if line.startswith("fleetctl assign"))
    assert repeated.startswith("nothing imported: all 50 assignments already present")
    performance = next(out for line, out in first.items() if "performance VEHICLE-00042" in line)
    assert "VEHICLE-00042" in performance
    api = next(out for line, out in first.items() if "/v1/analytics/fleet" in line)
    assert '"vehicles"' in api
