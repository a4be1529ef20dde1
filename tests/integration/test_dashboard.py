"""The dashboard page as a person sees it: `fleetctl serve` against a seeded database, loaded in
headless Chromium (Debian's `chromium`, installed by `make test`), asserted on its DOM after
its scripts ran, and a screenshot kept in .test-artifacts/dashboard.png."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleetctl.alerts.evaluation import AlertConfig, evaluate
from fleetdb.connect import connect
from fleetsim.direct import backfill_direct
from fleetsim.model import FleetConfig
from tests.integration.test_ops_http import fleetctl_serve, get

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / ".test-artifacts"
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
# Background networking off: this machine's closed network refuses it, many times a start.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",
]


def _chromium(profile: Path, *args: str) -> str:
    exe = shutil.which("chromium")
    assert exe, "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    result = subprocess.run(
        [exe, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


async def test_dashboard_shows_the_fleet(
    database_url: str, analytics_url: str, admin_url: str, tmp_path: Path
) -> None:
    cfg = FleetConfig(meters=12, vehicles=12, seed=4, degraded_fraction=0.2, critical_fraction=0.1)
    await backfill_direct(database_url, cfg, END - timedelta(hours=25), END)
    conn = await connect(admin_url)
    try:
        await evaluate(conn, AlertConfig(), END)
    finally:
        await conn.close()
    start, end = END - timedelta(hours=24), END
    query = f"start={start:%Y-%m-%dT%H:%M:%SZ}&end={end:%Y-%m-%dT%H:%M:%SZ}"
    with fleetctl_serve(analytics_url, FLEET_API_TOKEN="dashboard-secret-123") as port:
        # The page and its assets are public; the data behind them is not.
        assert (await get(port, "/"))[0] == 200
        status, headers, _ = await get(port, "/static/vendor/uPlot.iife.min.js")
        assert (status, headers["Content-Type"]) == (200, "text/javascript; charset=utf-8")
        assert (await get(port, "/v1/alerts"))[0] == 401
        assert (await get(port, "/static/../serve.py"))[0] in (401, 404)  # never the file
        url = f"http://127.0.0.1:{port}/?{query}#token=dashboard-secret-123"
        dom = await asyncio.to_thread(_chromium, tmp_path / "profile", "--dump-dom", url)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        await asyncio.to_thread(
            _chromium, tmp_path / "profile2", "--window-size=1280,900", f"--screenshot={shot}", url
        )
    assert 'data-loaded="true"' in dom, dom[-3000:]
    assert '<span id="error" role="alert"></span>' in dom
    assert "12 vehicles" in dom
    assert 'data-status="optimal"' in dom
    # The worst chargers first: the critical ones the model drew lead the table.
    assert dom.count('<tr class="critical" data-meter=') >= 1
    assert "data-ci=" in dom  # the fit's 95 % interval shown
    assert "η 95 %" in dom
    assert 'data-points="24"' in dom  # one vehicle's hourly chart, 24 hours
    assert "<canvas" in dom  # drawn by uPlot, vendored (no CDN)
    assert 'data-kind="charger_critical"' in dom
    assert shot.stat().st_size > 10_000
