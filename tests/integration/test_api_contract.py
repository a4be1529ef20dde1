"""The /v1 contract on a live `fleetctl serve` over a seeded database: schemathesis generates
requests from /v1/openapi.json (valid and invalid ones) and checks that none is answered 5xx and
every answer conforms to the document; then the contract's own promises one by one: pages that
cover a listing exactly once, cursors bound to their query, the seeds' aliases, meterId, unknown
parameters, out-of-range numbers and the maximum window."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from fleetctl.alerts.evaluation import AlertConfig, evaluate
from fleetdb.connect import connect
from fleetsim.direct import backfill_direct
from fleetsim.model import FleetConfig
from tests.integration.test_analytics import depot
from tests.integration.test_dashboard import _chromium
from tests.integration.test_ops_http import fleetctl_serve, get

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "contract-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
ARTIFACTS = Path(__file__).resolve().parents[2] / ".test-artifacts"
SCHEMATHESIS_BUDGET_S = 120


async def _seed(database_url: str, admin_url: str) -> None:
    """12 simulated vehicles over the last 25 h (the default window has data), the hand-made
    depot (a shared meter, a reassignment), alerts and a few dead letters."""
    cfg = FleetConfig(meters=12, vehicles=12, seed=7, degraded_fraction=0.2, critical_fraction=0.1)
    await backfill_direct(database_url, cfg, NOW - timedelta(hours=25), NOW - timedelta(minutes=1))
    conn = await connect(database_url)
    try:
        await depot(conn)
        for i in range(30):
            await conn.execute(
                """INSERT INTO rejected_messages (received_at, topic, payload, reason,
                                                  payload_sha256)
                   VALUES ($1, $2, $3, $4, sha256($3))""",
                NOW - timedelta(minutes=i % 7),  # ties on received_at: the id decides
                f"vehicles/V{i}/telemetry",
                f'{{"soc": {150 + i}}}'.encode(),
                f"soc: must be <= 100 (got {150 + i})",
            )
    finally:
        await conn.close()
    conn = await connect(admin_url)
    try:
        await evaluate(conn, AlertConfig(), NOW)
    finally:
        await conn.close()


async def _json(port: int, target: str) -> tuple[int, Any]:
    status, headers, body = await get(port, target, headers=AUTH)
    assert headers["Content-Type"].startswith("application/json"), (target, headers)
    return status, json.loads(body)


async def _walk(port: int, path: str, items: str, limit: int) -> list[Any]:
    """Every item of a paged listing, following nextCursor."""
    out: list[Any] = []
    sep = "&" if "?" in path else "?"
    target = f"{path}{sep}limit={limit}"
    for _ in range(1000):
        status, body = await _json(port, target)
        assert status == 200, body
        page = body
        for key in items.split("."):
            page = page[key]
        assert len(page) <= limit
        out += page
        if body["nextCursor"] is None:
            return out
        target = f"{path}{sep}limit={limit}&cursor={quote(body['nextCursor'])}"
    raise AssertionError("the pages never end")


def _schemathesis(port: int, workdir: Path) -> subprocess.CompletedProcess[str]:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is a dev extra: make venv installs it"
    ARTIFACTS.mkdir(exist_ok=True)
    return subprocess.run(
        [
            st,
            "run",
            f"http://127.0.0.1:{port}/v1/openapi.json",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            "-c",
            "not_a_server_error,response_schema_conformance",
            "-n",
            "25",
            "--seed",
            "23",
            "--workers",
            "2",
            "--request-timeout",
            "20",
            "--no-color",
            "--generation-database",
            "none",
            "--report",
            "junit",
            "--report-junit-path",
            str(ARTIFACTS / "schemathesis-junit.xml"),
        ],
        capture_output=True,
        text=True,
        timeout=SCHEMATHESIS_BUDGET_S,
        cwd=workdir,  # where schemathesis keeps its own files
        check=False,
    )


async def test_the_contract_holds_on_a_live_server(
    database_url: str, analytics_url: str, admin_url: str, tmp_path: Path
) -> None:
    await _seed(database_url, admin_url)
    with fleetctl_serve(
        analytics_url, FLEET_API_TOKEN=TOKEN, FLEET_ADMIN_DATABASE_URL=admin_url
    ) as port:
        # The document and its page need no token; the data does.
        status, headers, body = await get(port, "/v1/openapi.json")
        assert status == 200
        doc = json.loads(body)
        assert doc["openapi"].startswith("3.1")
        status, headers, page = await get(port, "/v1/docs")
        assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
        assert b"/static/vendor/swagger-ui-bundle.js" in page
        assert (await get(port, "/static/vendor/swagger-ui-bundle.js"))[0] == 200
        assert (await get(port, "/v1/alerts"))[0] == 401
        # The page renders under the server's CSP (own scripts and styles only).
        url = f"http://127.0.0.1:{port}/v1/docs"
        dom = await asyncio.to_thread(_chromium, tmp_path / "profile", "--dump-dom", url)
        assert "/v1/analytics/fleet/summary" in dom, dom[-2000:]
        assert "opblock" in dom

        began = time.monotonic()
        run = _schemathesis(port, tmp_path)
        took = time.monotonic() - began
        print(f"schemathesis: {took:.0f} s, exit {run.returncode}\n{run.stdout[-3000:]}")
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]

        await _pages_cover_each_listing_once(port)
        await _cursors_are_bound_to_their_query(port)
        await _parameters(port)


async def _pages_cover_each_listing_once(port: int) -> None:
    _, whole = await _json(port, "/v1/analytics/fleet?sort=efficiency")
    assert whole["nextCursor"] is None
    ids = [r["vehicleId"] for r in whole["vehicles"]]
    assert len(ids) >= 20
    for sort in ("efficiency", "loss", "vehicle"):
        _, ordered = await _json(port, f"/v1/analytics/fleet?sort={sort}&hours=24")
        paged = await _walk(port, f"/v1/analytics/fleet?sort={sort}&hours=24", "vehicles", 7)
        assert [r["vehicleId"] for r in paged] == [r["vehicleId"] for r in ordered["vehicles"]]
    _, summary = await _json(port, "/v1/analytics/fleet/summary?worst=3")
    assert summary["statusCounts"] == whole["statusCounts"]
    assert summary["totals"]["vehicles"] == len(ids)
    assert [r["vehicleId"] for r in summary["worst"]] == ids[:3]
    assert "vehicles" not in summary

    for path, items, key in (
        ("/v1/current/all", "meters.devices", "meterId"),
        ("/v1/current/vehicles", "devices", "vehicleId"),
        ("/v1/assignments", "assignments", "vehicleId"),
        ("/v1/alerts", "alerts", "id"),
        ("/v1/rejects", "newest", "id"),
    ):
        _, everything = await _json(port, path + ("?limit=1000" if "rejects" in path else ""))
        listed = everything
        for k in items.split("."):
            listed = listed[k]
        paged = await _walk(port, path, items, 4)
        if path == "/v1/current/all":  # meters, then vehicles: the page may hold both
            paged = [d for d in paged if key in d]
        assert [d[key] for d in paged] == [d[key] for d in listed], path
        assert len(listed) > 4, path
    all_devices = await _walk(port, "/v1/current/all", "vehicles.devices", 5)
    _, whole_all = await _json(port, "/v1/current/all")
    assert len(all_devices) == whole_all["vehicles"]["count"]


async def _cursors_are_bound_to_their_query(port: int) -> None:
    _, first = await _json(port, "/v1/analytics/fleet?limit=3")
    cursor = first["nextCursor"]
    assert cursor
    body_part, digest = cursor.split(".")
    for bad in (cursor[:-2], body_part[:-3] + "AAA." + digest, "not-a-cursor", "%00"):
        status, body = await _json(port, f"/v1/analytics/fleet?limit=3&cursor={quote(bad)}")
        assert status == 400, body
        assert "cursor" in body["error"]
    status, body = await _json(port, f"/v1/analytics/fleet?limit=3&sort=loss&cursor={cursor}")
    assert (status, "other parameters" in body["error"]) == (400, True)
    status, body = await _json(port, f"/v1/alerts?limit=3&cursor={cursor}")
    assert (status, "another listing" in body["error"]) == (400, True)


async def _parameters(port: int) -> None:
    start, end = "2026-11-20T08:00:00Z", "2026-11-20T11:00:00Z"
    _, plain = await _json(port, f"/v1/analytics/performance/V4?start={start}&end={end}")
    _, seeds = await _json(port, f"/v1/analytics/performance/V4?startDate={start}&endDate={end}")
    assert seeds["window"] == plain["window"] == {"start": start, "end": end}
    assert seeds["totalAcKwh"] == plain["totalAcKwh"]
    # V4 moved from M4 to M5 90 minutes in: meterId keeps the time on that meter only.
    assert {m["meterId"] for m in plain["meters"]} == {"M4", "M5"}
    _, m5 = await _json(port, f"/v1/analytics/performance/V4?start={start}&end={end}&meterId=M5")
    assert [m["meterId"] for m in m5["meters"]] == ["M5"]
    assert m5["meterId"] == "M5"
    assert 0 < m5["totalAcKwh"] < plain["totalAcKwh"]
    _, none = await _json(port, f"/v1/analytics/performance/V4?start={start}&end={end}&meterId=M9")
    assert (none["meters"], none["status"]) == ([], "insufficient_data")

    for target, named in (
        ("/v1/analytics/fleet?hours=1e9", "hours"),
        ("/v1/analytics/fleet?hours=inf", "hours"),
        ("/v1/analytics/fleet?hours=nan", "hours"),
        ("/v1/analytics/fleet?hours=-5", "hours"),
        ("/v1/analytics/fleet?start=0001-01-01T00:00:00Z&end=9999-12-31T00:00:00Z", "start"),
        ("/v1/analytics/fleet?start=2026-01-01T00:00:00Z&end=2026-03-01T00:00:00Z", "maximum"),
        ("/v1/analytics/fleet?hours=745", "maximum"),
        ("/v1/analytics/fleet?startDate=2026-01-01T00:00:00Z&bogus=1&limt=3", "bogus, limt"),
        ("/v1/analytics/performance/V%001", "vehicleId"),
        ("/v1/analytics/performance/V1?meterId=M%00", "meterId"),
        ("/v1/current/vehicles/V%01", "deviceId"),
        ("/v1/assignments?vehicleId=%00", "vehicleId"),
        ("/v1/rejects?limit=1e3", "limit"),
        ("/v1/alerts?limit=0", "limit"),
    ):
        status, body = await _json(port, target)
        assert status == 400, (target, body)
        assert named in body["error"], (target, body)
        assert "\n" not in body["error"]
