"""The install is whole: a wheel built from a clean clone of the repository (so nothing the
working tree has but git does not, like vendored files of an earlier `make static`, can leak
in) carries the dashboard's assets. Installed into a fresh venv, its own `fleetctl serve`
draws the chart and the API docs page in headless Chromium.

The wheel is built by pip with build isolation (hatchling from the package index, the assets by
the build hook from web/'s npm lock); the venv gets its dependencies from the index, as `make
venv` does. The clone is of HEAD: commit before running this test on a change."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleet_harness import free_port
from fleet_harness.ports import wait_for_port
from fleetsim.direct import backfill_direct
from fleetsim.model import FleetConfig
from tests.integration.test_dashboard import ARTIFACTS, _chromium
from tests.integration.test_ops_http import get

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "wheel-install-secret-42"
VENDOR = "fleetctl/api/static/vendor"
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel of a clean clone installed; its bin/ directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    _run("git", "clone", "--quiet", "--no-hardlinks", ROOT, tmp / "src")
    assert not (tmp / "src" / "daemon" / VENDOR.removeprefix("fleetctl/")).exists()
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", tmp / "src")
    (wheel,) = (tmp / "dist").glob("fleet_telemetry-*.whl")
    listing = _run(sys.executable, "-m", "zipfile", "-l", wheel)
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"{VENDOR}/{name}" in listing, name
    # The functions every `fleetd migrate` applies after the numbered files ship with them.
    assert "fleetdb/sql/functions/day_partitions.sql" in listing
    _run(sys.executable, "-m", "venv", tmp / "venv")
    bin_dir = tmp / "venv" / "bin"
    _run(bin_dir / "python", "-m", "pip", "install", "-q", wheel)
    where = _run(bin_dir / "python", "-c", "import fleetctl; print(fleetctl.__file__)", cwd=tmp)
    assert where.startswith(str(tmp / "venv")), where  # the wheel's, not this tree's
    return bin_dir


@contextlib.contextmanager
def serving(bin_dir: Path, database_url: str) -> Iterator[int]:
    """The installed `fleetctl serve` on a free port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "FLEET_ANALYTICS_DATABASE_URL": database_url,
        "FLEET_API_ADDR": f"127.0.0.1:{port}",
        "FLEET_API_TOKEN": TOKEN,
        "FLEET_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [bin_dir / "fleetctl", "serve"],
        env=env,
        cwd=bin_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, out.decode()[-3000:]


async def test_the_wheel_of_a_clean_clone_serves_a_dashboard_that_draws(
    installed: Path, database_url: str, analytics_url: str, tmp_path: Path
) -> None:
    cfg = FleetConfig(meters=4, vehicles=4, seed=4)
    await backfill_direct(database_url, cfg, END - timedelta(hours=25), END)
    query = f"start={END - timedelta(hours=24):%Y-%m-%dT%H:%M:%SZ}&end={END:%Y-%m-%dT%H:%M:%SZ}"
    with serving(installed, analytics_url) as port:
        for asset in ("uPlot.iife.min.js", "swagger-ui-bundle.js"):
            assert (await get(port, f"/static/vendor/{asset}"))[0] == 200, asset
        base = f"http://127.0.0.1:{port}"
        dom = await asyncio.to_thread(
            _chromium, tmp_path / "p1", "--dump-dom", f"{base}/?{query}#token={TOKEN}"
        )
        docs = await asyncio.to_thread(_chromium, tmp_path / "p2", "--dump-dom", f"{base}/v1/docs")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "wheel-dashboard.png"
        await asyncio.to_thread(
            _chromium,
            tmp_path / "p3",
            "--window-size=1280,900",
            f"--screenshot={shot}",
            f"{base}/?{query}#token={TOKEN}",
        )
    assert "uPlot is not defined" not in dom
    assert 'data-loaded="true"' in dom, dom[-3000:]
    assert '<span id="error" role="alert"></span>' in dom
    assert 'data-points="24"' in dom  # the chart has its 24 hours
    assert "<canvas" in dom  # and uPlot drew them
    # Swagger UI rendered the document: the operations are listed.
    assert "/v1/analytics/fleet" in docs, docs[-3000:]
    assert 'class="swagger-ui' in docs
