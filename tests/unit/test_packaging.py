"""What a production host installs, and which package may import which: fleetd and fleetctl never
import each other (both use the validation, writer and replay in fleetdb.ingest), the shared
packages (fleetsvc: HTTP, the MQTT codec, logging) import neither, and nothing installed for
production imports the simulator, the test harness, the benchmark or paho-mqtt. Inside fleetctl,
packages by job: the reports (analytics) import none of the others, alerts and admin build on
analytics only, the HTTP API on analytics, alerts and admin, and only the CLI sees everything. The
test harness (throwaway servers) imports none of the project's packages: the demo and the benchmark,
which run the apps, live in fleetsim."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = ("fleetd", "fleetdb", "fleetsvc", "fleetctl")
NOT_IN_PRODUCTION = ("fleetsim", "fleet_harness", "paho")
FORBIDDEN = {
    "fleetd": {"fleetctl"},
    "fleetdb": {"fleetd", "fleetctl", "fleetsvc"},
    "fleetsvc": {"fleetd", "fleetctl", "fleetdb"},
    "fleetctl": {"fleetd"},  # the validation and writer it replays through are fleetdb.ingest
}


# fleetctl's packages by job, and which of its other packages each may not import.
FLEETCTL_FORBIDDEN = {
    "analytics": {"alerts", "admin", "api", "cli", "settings"},
    "alerts": {"admin", "api", "cli"},
    "admin": {"alerts", "api", "cli"},
    "api": {"cli"},
    "errors": {"analytics", "alerts", "admin", "api", "cli", "settings"},
    "params": {"analytics", "alerts", "admin", "api", "cli", "settings"},
    "roles": {"analytics", "alerts", "admin", "api", "cli", "settings"},
    "settings": {"admin", "api", "cli"},
}


def _modules(path: Path) -> set[str]:
    """Full names of the modules a file imports (absolute imports: the house style)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _imports(package: str, root: str = "daemon") -> dict[str, set[str]]:
    """Top-level names each module of <root>/<package> imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / root / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


def test_the_production_distribution_holds_only_fleetd_fleetctl_and_what_they_share() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert sorted(wheel["packages"]) == sorted(f"daemon/{p}" for p in PRODUCTION)
    assert wheel["force-include"] == {"sql": "fleetdb/sql"}
    deps = " ".join(project["project"]["dependencies"])
    assert "paho" not in deps
    assert set(project["project"]["scripts"]) == {"fleetd", "fleetctl"}


@pytest.mark.parametrize("package", PRODUCTION)
def test_production_code_imports_nothing_it_does_not_ship(package: str) -> None:
    for module, names in _imports(package).items():
        assert not names & {*NOT_IN_PRODUCTION, *FORBIDDEN[package]}, module


def test_the_harness_holds_only_throwaway_servers() -> None:
    """fleet_harness starts PostgreSQL, brokers and network namespaces from the machine's
    binaries (asyncpg and paho-mqtt to talk to them); it needs none of the apps' code."""
    for module, names in _imports("fleet_harness", root="simulator").items():
        assert not names & {*PRODUCTION, "fleetsim"}, module


@pytest.mark.parametrize("job", sorted(FLEETCTL_FORBIDDEN))
def test_fleetctl_packages_import_only_what_their_job_needs(job: str) -> None:
    root = REPO / "daemon" / "fleetctl"
    paths = sorted((root / job).rglob("*.py")) if (root / job).is_dir() else [root / f"{job}.py"]
    assert paths, job
    for path in paths:
        for name in _modules(path):
            parts = name.split(".")
            assert not (
                parts[0] == "fleetctl" and len(parts) > 1 and parts[1] in FLEETCTL_FORBIDDEN[job]
            ), (str(path.relative_to(REPO)), name)


def test_the_dashboard_assets_ship_inside_the_api_package() -> None:
    """Made by the build hook when missing (the wheel of a clean clone:
    tests/integration/test_wheel_install.py), shipped in the wheel and the sdist."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    build = project["tool"]["hatch"]["build"]
    assert build["artifacts"] == ["daemon/fleetctl/api/static/vendor/*"]
    assert "custom" in build["hooks"]
    assert (REPO / "hatch_build.py").is_file()
    assert (REPO / "daemon" / "fleetctl" / "api" / "static" / "index.html").is_file()


def test_without_npm_the_asset_build_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = importlib.util.spec_from_file_location("web_assets", REPO / "web" / "assets.py")
    assert spec is not None
    assert spec.loader is not None
    assets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(assets)
    names = ["uPlot.iife.min.js", "uPlot.min.css", "swagger-ui-bundle.js", "swagger-ui.css"]
    assert assets.missing(tmp_path) == names
    monkeypatch.setattr(assets.shutil, "which", lambda _name: None)
    with pytest.raises(assets.AssetsError, match=r"npm is needed .* apt-get install -y npm"):
        assets.build(tmp_path)


def test_the_cli_starts_without_the_reports_or_the_settings() -> None:
    """`fleetctl --help` and argument errors load neither numpy, asyncpg nor pydantic: each
    command imports them when it runs (issue 24: --help took 0.74 s)."""
    code = (
        "import sys; from fleetctl.cli import main; main(['--help']); "
        "print(sorted(m for m in ('numpy', 'asyncpg', 'pydantic', 'fleetctl.analytics') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
