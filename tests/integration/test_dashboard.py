"""The dashboard page as an operator sees it: `fleetctl serve` against a seeded database (12
simulated vehicles over 8 days, alerts, then 10,000 more vehicle ids), loaded in headless
Chromium (Debian's `chromium`, installed by `make test`) at 1400 and 800 px. A --dump-dom run
with virtual time checks what the page shows and that it refreshes itself; a DevTools session
(tests/integration/cdp.py) clicks the time range, types into the vehicle search, hides the tab
and resizes. Screenshots are kept in .test-artifacts/dashboard-*.png."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from fleetctl.alerts.evaluation import AlertConfig, evaluate
from fleetdb.connect import connect
from fleetsim.direct import backfill_direct
from fleetsim.model import FleetConfig
from tests.integration.cdp import HEADLESS, Page, chromium
from tests.integration.test_ops_http import fleetctl_serve, get

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / ".test-artifacts"
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
TOKEN = "dashboard-secret-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FLAGS = [*HEADLESS, "--virtual-time-budget=15000"]


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


def _z(t: datetime) -> str:
    return f"{t:%Y-%m-%dT%H:%M:%SZ}"


async def _seed(database_url: str, admin_url: str) -> None:
    cfg = FleetConfig(meters=12, vehicles=12, seed=4, degraded_fraction=0.2, critical_fraction=0.1)
    await backfill_direct(database_url, cfg, NOW - timedelta(days=8), NOW - timedelta(minutes=1))
    conn = await connect(admin_url)
    try:
        await evaluate(conn, AlertConfig(), NOW)
    finally:
        await conn.close()


async def _ten_thousand_more(database_url: str) -> None:
    """10,000 vehicle ids EV-00000..EV-09999 in the current table: a fleet's size for the
    search (after the screenshots, which show the 12 with history)."""
    conn = await connect(database_url)
    try:
        await conn.execute(
            """INSERT INTO vehicle_current (vehicle_id, ts, updated_at, soc, battery_temp,
                                            kwh_delivered_dc)
               SELECT 'EV-' || lpad(i::text, 5, '0'), now(), now(), 50, 20, 1
                 FROM generate_series(0, 9999) i"""
        )
    finally:
        await conn.close()


async def _json(port: int, target: str) -> tuple[int, Any]:
    status, _, body = await get(port, target, headers=AUTH)
    return status, json.loads(body)


async def test_dashboard_is_an_operations_screen(
    database_url: str, analytics_url: str, admin_url: str, tmp_path: Path
) -> None:
    await _seed(database_url, admin_url)
    ARTIFACTS.mkdir(exist_ok=True)
    with fleetctl_serve(analytics_url, FLEET_API_TOKEN=TOKEN) as port:
        base = f"http://127.0.0.1:{port}"
        # The page and its assets are public; the data behind them is not.
        assert (await get(port, "/"))[0] == 200
        status, headers, _ = await get(port, "/static/vendor/uPlot.iife.min.js")
        assert (status, headers["Content-Type"]) == (200, "text/javascript; charset=utf-8")
        assert (await get(port, "/v1/alerts"))[0] == 401
        assert (await get(port, "/static/../serve.py"))[0] in (401, 404)  # never the file
        await _daily_matches_the_fleet_totals(port)
        await _dom_after_two_refreshes(base, tmp_path)
        async with chromium(tmp_path / "cdp") as page:
            await _token_and_range(page, base)
            await _narrow(page, base)
            await _ten_thousand_more(database_url)
            await _vehicle_search(page, port)
            await _paused_while_hidden(page)


async def _daily_matches_the_fleet_totals(port: int) -> None:
    """On whole hours, the days of /v1/analytics/fleet/daily add up to the fleet's totals
    (every meter and vehicle of the simulated fleet is assigned 1:1)."""
    end = NOW.replace(minute=0) - timedelta(hours=1)
    q = f"start={_z(end - timedelta(days=3))}&end={_z(end)}"
    _, daily = await _json(port, f"/v1/analytics/fleet/daily?{q}")
    _, summary = await _json(port, f"/v1/analytics/fleet/summary?{q}")
    assert len(daily["days"]) in (3, 4)
    assert sum(d["acKwh"] for d in daily["days"]) == pytest.approx(
        summary["totals"]["totalAcKwh"], abs=1e-6
    )
    assert sum(d["dcKwh"] for d in daily["days"]) == pytest.approx(
        summary["totals"]["totalDcKwh"], abs=1e-6
    )
    assert all(0.5 < d["efficiency"] < 1 for d in daily["days"]), daily
    assert daily["newestReadingAt"] is not None


async def _dom_after_two_refreshes(base: str, tmp_path: Path) -> None:
    """?range=7d at 1400 px, 75 s of virtual time: everything shown, refreshed once more."""
    url = f"{base}/?range=7d#token={TOKEN}"
    flags = ("--window-size=1400,1000", "--virtual-time-budget=75000", "--dump-dom", url)
    dom = await asyncio.to_thread(_chromium, tmp_path / "profile", *flags)
    (ARTIFACTS / "dashboard-7d.html").write_text(dom)
    assert 'data-loaded="true"' in dom, dom[-3000:]
    assert '<span id="error" role="alert"></span>' in dom
    assert 'data-refreshes="2"' in dom, "the page did not refresh itself after 60 s"
    assert 'data-refresh-s="60"' in dom
    # The range: kept in the URL, pressed, and in every heading that depends on it.
    assert 'data-range="7d" aria-pressed="true"' in dom
    assert "Vehicles by status · last 7 d" in dom
    assert "Fleet efficiency per day · last 7 d" in dom
    assert "24 h" not in re.sub(r"<button[^>]*>24 h</button>", "", dom)
    # Vehicles per status over the range.
    counts = [int(n) for n in re.findall(r'data-status="\w+" data-count="(\d+)"', dom)]
    assert len(counts) == 5, counts
    assert sum(counts) == 12, counts
    assert "12 vehicles" in dom
    # Fleet efficiency per day: 7 days touch 8 UTC days, each with a ratio, drawn. The trend
    # counts whole hours only, so a window starting in a day's last hour (a run at 23:xx UTC)
    # has nothing of its first day: 7 then.
    daily = re.search(r'id="daily" class="chart" data-days="(\d)" data-with-efficiency="(\d)"', dom)
    assert daily, dom
    assert daily[1] == daily[2], daily[0]
    assert daily[1] == "8" or (daily[1] == "7" and datetime.now(UTC).hour in (23, 0)), daily[0]
    # Data as of ... (age).
    # Fresh or stale by the age the page computed: the data was seeded when this module was
    # imported, which in a whole-suite run on a loaded host can be over 5 minutes ago.
    as_of = re.search(
        r'id="as-of"[^>]*class="(fresh|stale)" data-age-seconds="(\d+)">data as of \d{4}-\d\d-\d\d',
        dom,
    )
    assert as_of, dom
    assert as_of[1] == ("fresh" if int(as_of[2]) <= 300 else "stale"), as_of[0]
    assert re.search(r"data as of [^<]+ UTC \(\d+ (s|min) ago\)", dom)
    # Alerts grouped by kind with counts, the kind with the newest alert first.
    groups = re.findall(r'<details class="alert-group" data-kind="(\w+)" data-count="(\d+)"', dom)
    assert groups, dom
    assert len({k for k, _ in groups}) == len(groups), groups
    assert "charger_critical" in {k for k, _ in groups}
    assert 'data-points="169"' in dom  # the worst vehicle's hours: 7 d off the hour touch 169
    assert dom.count('<tr class="critical" data-meter=') >= 1
    assert "data-ci=" in dom  # the fit's 95 % interval shown
    assert "η 95 %" in dom
    assert dom.count("<canvas") >= 2  # both charts drawn by uPlot, vendored (no CDN)


async def _token_and_range(page: Page, base: str) -> None:
    await page.viewport(1400, 1000)
    await page.navigate(f"{base}/#token={TOKEN}")
    await page.wait_for("document.body.dataset.loaded === 'true'")
    # The token left the address bar (and so history) at once, and is kept for the session.
    assert await page.evaluate("location.href") == f"{base}/"
    assert await page.evaluate("document.getElementById('status-h').textContent") == (
        "Vehicles by status · last 24 h"
    )
    await page.screenshot(ARTIFACTS / "dashboard-1400.png")
    # A range button writes the URL and reloads the data for it; a second click while the
    # first range loads is not lost.
    await page.evaluate("document.querySelector('[data-range=\"7d\"]').click()")
    await page.evaluate("document.querySelector('[data-range=\"30d\"]').click()")
    # 31 UTC days, or 30 when the window starts in a day's last hour (whole hours only).
    await page.wait_for("['30', '31'].includes(document.getElementById('daily').dataset.days)")
    assert await page.evaluate("location.search") == "?range=30d"
    assert "last 30 d" in await page.evaluate("document.getElementById('daily-h').textContent")
    # A custom window from the URL (a link someone sent): its own bounds in the headings.
    end = NOW.replace(minute=0) - timedelta(days=3)
    start = end - timedelta(hours=36)
    await page.navigate(f"{base}/?start={_z(start)}&end={_z(end)}")
    await page.wait_for("document.body.dataset.loaded === 'true'")
    heading = await page.evaluate("document.getElementById('status-h').textContent")
    assert (
        heading == f"Vehicles by status · {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC (36 h)"
    )
    pressed = "document.querySelector('[aria-pressed=true]').dataset.range"
    assert await page.evaluate(pressed) == "custom"
    assert await page.evaluate("!document.getElementById('custom').hidden")
    assert await page.evaluate("document.getElementById('custom-start').value") == (
        f"{start:%Y-%m-%dT%H:%M}"
    )
    assert await page.evaluate("document.getElementById('chart').dataset.points") == "36"
    # The custom form: new bounds, applied, in the URL.
    await page.evaluate(
        f"document.getElementById('custom-start').value = "
        f"'{start - timedelta(hours=12):%Y-%m-%dT%H:%M}';"
        "document.querySelector('#custom button').click()"
    )
    await page.wait_for("document.getElementById('chart').dataset.points === '48'")
    assert await page.evaluate("location.search") == (
        f"?start={quote(_z(start - timedelta(hours=12)))}&end={quote(_z(end))}"
    )


async def _narrow(page: Page, base: str) -> None:
    """800 px: one column, nothing wider than the window, charts redrawn to fit."""
    await page.viewport(800, 1000)
    await page.navigate(f"{base}/?range=7d")
    await page.wait_for("document.body.dataset.loaded === 'true'")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 800
    rights = await page.evaluate(
        "[...document.querySelectorAll('header, section, canvas')]"
        ".map((e) => Math.round(e.getBoundingClientRect().right))"
    )
    assert rights, "nothing laid out"
    assert max(rights) <= 800, rights
    lefts = await page.evaluate(
        "[...document.querySelectorAll('main > section')].map((e) => e.offsetLeft)"
    )
    assert len(set(lefts)) == 1, f"not one column at 800 px: {lefts}"
    await page.screenshot(ARTIFACTS / "dashboard-800.png")
    # Resized from wide to narrow, the charts follow.
    await page.viewport(1400, 1000)
    await page.wait_for("document.querySelector('#daily canvas').width > 700")
    await page.viewport(800, 1000)
    await page.wait_for(
        "document.querySelector('#daily canvas').getBoundingClientRect().right <= 800"
    )


async def _vehicle_search(page: Page, port: int) -> None:
    """Type-ahead over 10,012 vehicles: the API answers a prefix a page at a time."""
    # The route itself: pages of a prefix, any case, cover exactly the ids that start with it.
    seen: list[str] = []
    target = "/v1/vehicles?prefix=ev-012&limit=30"
    while target:
        status, body = await _json(port, target)
        assert status == 200, body
        seen += [v["vehicleId"] for v in body["vehicles"]]
        cursor = body["nextCursor"]
        target = f"/v1/vehicles?prefix=ev-012&limit=30&cursor={quote(cursor)}" if cursor else ""
    assert seen == [f"EV-012{i:02d}" for i in range(100)]
    status, body = await _json(port, "/v1/vehicles?prefix=EV%20")
    assert status == 400
    assert "prefix" in body["error"]
    _, body = await _json(port, "/v1/vehicles?prefix=vehicle-0000")
    assert [v["vehicleId"] for v in body["vehicles"]][:2] == ["VEHICLE-00001", "VEHICLE-00002"]
    assert body["vehicles"][0]["lastSeenAt"] is not None

    await page.evaluate("document.getElementById('vehicle-search').focus()")
    await page.type("ev-012")
    await page.wait_for(
        "document.querySelectorAll('#vehicle-options [data-vehicle^=\"EV-012\"]').length === 10"
    )
    assert (
        await page.evaluate("document.querySelectorAll('#vehicle-options [role=option]').length")
        == 10
    )
    assert "more" in await page.evaluate(
        "document.querySelector('#vehicle-options .note').textContent"
    )
    # Another prefix; the keyboard picks the first suggestion.
    await page.evaluate(
        "const box = document.getElementById('vehicle-search'); box.value = 'vehicle-0000';"
        "box.dispatchEvent(new Event('input'))"
    )
    await page.wait_for(
        "!!document.querySelector('#vehicle-options [data-vehicle=\"VEHICLE-00002\"]')"
    )
    await page.screenshot(ARTIFACTS / "dashboard-800-search.png")
    for key, code in (("ArrowDown", 40), ("ArrowDown", 40), ("Enter", 13)):
        for kind in ("keyDown", "keyUp"):
            await page.send(
                "Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code
            )
    await page.wait_for("document.getElementById('chart').dataset.vehicle === 'VEHICLE-00002'")
    assert await page.evaluate("location.search") == "?range=7d&vehicle=VEHICLE-00002"
    assert await page.evaluate("document.getElementById('vehicle-options').hidden")


async def _paused_while_hidden(page: Page) -> None:
    """Hidden, the page stops refreshing; visible again, it goes on."""
    flip = """(hidden) => {
        Object.defineProperty(document, 'visibilityState',
                              {configurable: true, get: () => hidden ? 'hidden' : 'visible'});
        document.dispatchEvent(new Event('visibilitychange'));
    }"""
    await page.evaluate(f"({flip})(true)")
    assert await page.evaluate("document.body.dataset.paused") == "true"
    assert "paused" in await page.evaluate("document.getElementById('refresh').textContent")
    assert await page.evaluate("timer === null")  # no refresh scheduled while hidden
    await page.evaluate(f"({flip})(false)")
    assert await page.evaluate("document.body.dataset.paused") == "false"
    assert await page.evaluate("timer !== null")
