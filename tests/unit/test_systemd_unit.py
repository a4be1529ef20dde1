"""config/fleetd.service, config/fleet-api.service and config/fleet-alerts.service:
`systemd-analyze verify` accepts them without a warning, and they have the directives
operations rely on (notify + watchdog for fleetd, restart policy, stop timeout, hardening)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "config" / "fleetd.service"
API_UNIT = REPO / "config" / "fleet-api.service"
ALERTS_UNIT = REPO / "config" / "fleet-alerts.service"
INSTALLED_BIN = "/opt/fleet-telemetry/.venv/bin/"
INSTALLED_FLEETD = INSTALLED_BIN + "fleetd"


def _parse(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "systemd"],
            env=env,
            check=False,
            capture_output=True,
        )
        found = shutil.which("systemd-analyze")
        if found:
            return found
    pytest.skip("systemd-analyze not found (install: sudo apt-get install -y systemd)")


@pytest.mark.parametrize("unit_path", [UNIT, API_UNIT, ALERTS_UNIT], ids=lambda p: p.name)
def test_unit_verifies(tmp_path: Path, unit_path: Path) -> None:
    analyze = _systemd_analyze()
    text = unit_path.read_text()
    assert INSTALLED_BIN in text
    # verify checks that ExecStart's binary exists: point it at this checkout's scripts.
    here = Path(sys.executable).parent
    assert (here / "fleetd").exists()
    assert (here / "fleetctl").exists()
    unit = tmp_path / unit_path.name
    unit.write_text(text.replace(INSTALLED_BIN, f"{here}/"))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False
    )
    # Only complaints about our file count (a host may have broken units of its own). A missing
    # user is not reported by verify: users are created at install time.
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if str(unit) in line or unit_path.name in line
    ]
    assert result.returncode == 0, result.stderr
    assert ours == [], ours


@pytest.mark.parametrize("unit_path", [UNIT, API_UNIT, ALERTS_UNIT], ids=lambda p: p.name)
def test_a_bad_setting_is_not_restarted(unit_path: Path) -> None:
    """Exit 2 (a bad setting, an address taken, the wrong login for the job) is not retried by
    systemd every 2 s: the unit fails with the one line in the journal."""
    from fleetctl.cli.app import EXIT_CONFIG as FLEETCTL_EXIT_CONFIG  # noqa: PLC0415
    from fleetd.cli import EXIT_CONFIG  # noqa: PLC0415

    service = _parse(unit_path.read_text())["Service"]
    assert service["Restart"] == ["on-failure"]
    assert service["RestartPreventExitStatus"] == [str(EXIT_CONFIG)] == [str(FLEETCTL_EXIT_CONFIG)]


def test_api_unit_runs_fleetctl_serve_hardened() -> None:
    service = _parse(API_UNIT.read_text())["Service"]
    assert service["ExecStart"] == [INSTALLED_BIN + "fleetctl serve"]
    assert service["User"] == ["fleet-api"]
    for key in ("NoNewPrivileges", "ProtectSystem", "MemoryDenyWriteExecute", "Restart"):
        assert key in service
    assert "-/etc/fleet-telemetry/fleet-api.env" in service["EnvironmentFile"]


def test_alerts_unit_runs_the_evaluator_as_its_own_user() -> None:
    service = _parse(ALERTS_UNIT.read_text())["Service"]
    assert service["ExecStart"] == [INSTALLED_BIN + "fleetctl alerts run"]
    assert service["User"] == ["fleet-alerts"]
    assert "-/etc/fleet-telemetry/fleet-alerts.env" in service["EnvironmentFile"]


def test_unit_has_required_directives() -> None:
    unit = _parse(UNIT.read_text())
    service = unit["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "RestartSec": "2",
        "User": "fleetd",
        "Group": "fleetd",
        "EnvironmentFile": "-/etc/fleet-telemetry/fleetd.env",
        "ExecStart": f"{INSTALLED_FLEETD} run --config /etc/fleet-telemetry/fleetd.toml",
        "TimeoutStopSec": "15",
        "KillSignal": "SIGTERM",
        "MemoryMax": "512M",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], (key, service.get(key))
    assert "LimitNOFILE" in service
    assert "ReadOnlyPaths" in service
    # Migrations are an explicit ops step, never a side effect of (re)starting the daemon.
    assert "ExecStartPre" not in service
    assert "migrate" not in " ".join(service["ExecStart"])
    # fleetd exits within 8 s of SIGTERM (service.SHUTDOWN_GRACE_S); the stop timeout covers it.
    from fleetd.service import SHUTDOWN_GRACE_S  # noqa: PLC0415

    assert int(service["TimeoutStopSec"][0]) > SHUTDOWN_GRACE_S
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
