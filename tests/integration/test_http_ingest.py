"""HTTP ingest (FLEET_INGEST_HTTP_ADDR) on a running daemon with real PostgreSQL: each item's
outcome answered only after its transaction committed, the seeds' shapes and routes, tokens
limited to device patterns, the limits (401, 413, 429), fleetd's OpenAPI document, and a
client retrying after fleetd was killed with -9 mid-request storing every reading once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from fleet_harness import free_port
from fleet_harness.publish import rfc3339
from fleetd.ops.ingest_http import ALIASES, PRIMARY, IngestHttpServer
from fleetd.service import Daemon
from fleetd.settings import Settings
from tests.conftest import spawn_fleetd, wait_for_count
from tests.evidence import wait_ready
from tests.integration.test_ops_http import self_signed

pytestmark = pytest.mark.integration

FULL = "full-access-token-0123456789"
METERS_ONLY = "meters-only-token-0123456789"


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"# who may post\n{FULL}\n\n{METERS_ONLY} METER-0*,M-*\n")
    return path


def meter(device: str, ts: datetime, kwh: float = 1.5) -> dict[str, Any]:
    return {"meterId": device, "kwhConsumedAc": kwh, "voltage": 230.0, "timestamp": rfc3339(ts)}


def vehicle(device: str, ts: datetime, soc: float = 50.0) -> dict[str, Any]:
    return {
        "vehicleId": device,
        "soc": soc,
        "kwhDeliveredDc": 0.5,
        "batteryTemp": 25.0,
        "timestamp": rfc3339(ts),
    }


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Daemon, str]]:
    """A daemon with HTTP ingest on a free port, in this loop; (daemon, base URL)."""
    daemon = Daemon(settings)
    server = IngestHttpServer(daemon)
    daemon.companions.append(server.serve)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), 20)
        await asyncio.wait_for(server.started.wait(), 5)
        yield daemon, f"http://127.0.0.1:{server.port}"
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 15)


async def post(
    url: str,
    body: Any,
    token: str | None = FULL,
    raw: bytes | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=headers, ssl=tls or True) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


async def test_http_ingest_answers_each_item_after_commit(
    settings: Settings, tokens_file: Path, db: asyncpg.Connection
) -> None:
    cfg = settings.model_copy(
        update={
            "ingest_http_addr": "127.0.0.1:0",
            "ingest_tokens_file": tokens_file,
            "ingest_max_items": 200,
            "ingest_max_body_bytes": 64 * 1024,
            "max_buffered_rows": 150,
        }
    )
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    async with serving(cfg) as (daemon, base):
        url = base + PRIMARY
        status, headers, body = await post(url, [meter("METER-00001", t0)], token=None)
        assert status == 401
        assert headers["WWW-Authenticate"] == "Bearer"
        status, _, body = await post(url, [meter("METER-00001", t0)], token="wrong" * 5)
        assert status == 401

        mixed = [
            meter("METER-00001", t0),
            meter("METER-00001", t0 + timedelta(minutes=1)),
            vehicle("VEHICLE-00001", t0, soc=120),
            vehicle("VEHICLE-00001", t0),
            {"type": "METER", "payload": meter("METER-00002", t0)},
            "not an object",
        ]
        status, _, body = await post(url, mixed)
        assert status == 200, body
        expected = ["stored", "stored", "rejected", "stored", "stored", "rejected"]
        assert [i["status"] for i in body["items"]] == expected
        assert body["items"][2]["reason"] == "soc: must be <= 100.0 (got 120)"
        assert (body["stored"], body["rejected"]) == (4, 2)
        # Answered after commit: the rows are there now, not eventually.
        assert await db.fetchval("SELECT count(*) FROM meter_readings") == 3
        assert await db.fetchval("SELECT count(*) FROM vehicle_readings") == 1
        assert await db.fetchval("SELECT count(*) FROM rejected_messages") == 2

        # The same again: duplicates; one value changed: a conflict, the stored one kept.
        again = [*mixed[:2], meter("METER-00002", t0, kwh=9.0)]
        status, _, body = await post(url, again)
        assert [i["status"] for i in body["items"]] == ["duplicate", "duplicate", "conflict"]
        assert await db.fetchval("SELECT count(*) FROM meter_readings") == 3
        # Two equal copies of a new reading in one request: the second is a duplicate.
        twice = [meter("METER-00004", t0), meter("METER-00004", t0)]
        status, _, body = await post(url, twice)
        assert [i["status"] for i in body["items"]] == ["stored", "duplicate"]
        assert await db.fetchval("SELECT count(*) FROM meter_readings") == 4

        # A token limited to patterns: other devices are forbidden, not stored.
        status, _, body = await post(
            url,
            [meter("METER-00003", t0), vehicle("VEHICLE-00002", t0)],
            token=METERS_ONLY,
        )
        assert [i["status"] for i in body["items"]] == ["stored", "forbidden"]
        assert await db.fetchval("SELECT count(*) FROM vehicle_readings") == 1

        # The seeds' shapes on their routes.
        t1 = t0 + timedelta(minutes=10)
        seeds = {
            "/v1/telemetry/ingest": {"type": "VEHICLE", "payload": vehicle("VEHICLE-00003", t1)},
            "/api/v1/telemetry/meter": meter("METER-00010", t1),
            "/api/v1/telemetry/vehicle/batch": {"data": [vehicle("VEHICLE-00004", t1)]},
            "/v1/ingestion/telemetry": meter("METER-00011", t1),
            "/v1/ingestion/batch": [meter("METER-00012", t1), vehicle("VEHICLE-00005", t1)],
        }
        for path, payload in seeds.items():
            status, _, body = await post(base + path, payload)
            assert status == 200, (path, body)
            assert body["rejected"] == 0, (path, body)
            assert body["stored"] >= 1, (path, body)
        status, _, body = await post(base + "/api/v1/telemetry/meter", vehicle("VEHICLE-9", t1))
        assert body["items"][0]["status"] == "rejected"  # a vehicle on the meter route

        # Limits: nothing stored by a refused request.
        before = await db.fetchval("SELECT count(*) FROM meter_readings")
        many = [meter(f"METER-{i:05d}", t1) for i in range(100, 302)]
        status, _, body = await post(url, many)
        assert status == 413
        assert "FLEET_INGEST_MAX_ITEMS" in body["error"]
        status, _, body = await post(url, None, raw=b"[" + b" " * 70_000 + b"]")
        assert status == 413
        status, headers, body = await post(url, many[:151])
        assert status == 429, body
        assert headers["Retry-After"] == "1"
        status, _, body = await post(url, None, raw=b"{not json")
        assert status == 400
        assert body["error"].startswith("body: not valid JSON")
        assert await db.fetchval("SELECT count(*) FROM meter_readings") == before

        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/openapi.json") as resp:
                doc = await resp.json()
            async with session.get(base + "/healthz") as resp:
                assert resp.status == 200
        assert {PRIMARY, *(p for p, _ in ALIASES)} <= set(doc["paths"])
        assert "413" in doc["paths"][PRIMARY]["post"]["responses"]
        assert not daemon.stopping


async def test_a_retry_after_kill_9_mid_request_stores_every_reading_once(
    settings: Settings, tokens_file: Path, db: asyncpg.Connection, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "FLEET_INGEST_HTTP_ADDR": f"127.0.0.1:{port}",
        "FLEET_INGEST_TOKENS_FILE": str(tokens_file),
        # Two full batches commit at once, the last 500 wait for the (long) interval: the
        # kill lands while the request waits for its last transaction.
        "FLEET_BATCH_MAX_ROWS": "1000",
        "FLEET_FLUSH_INTERVAL_MS": "60000",
        "FLEET_FLUSH_IDLE_MS": "0",
    }
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    readings = [
        meter(f"METER-{i % 250:05d}", t0 + timedelta(minutes=i // 250)) for i in range(2500)
    ]
    url = f"http://127.0.0.1:{port}{PRIMARY}"
    first = spawn_fleetd(settings, log_path=tmp_path / "fleetd-1.log", **env)
    try:
        await wait_ready(first)
        request = asyncio.create_task(post(url, readings))
        await wait_for_count(db, "SELECT count(*) FROM meter_readings", 2000, timeout_s=30)
        assert not request.done()  # no answer yet: its last 500 have not committed
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        with pytest.raises(aiohttp.ClientError):
            await request
    finally:
        if first.poll() is None:
            first.kill()
    env["FLEET_FLUSH_INTERVAL_MS"] = "200"
    second = spawn_fleetd(settings, log_path=tmp_path / "fleetd-2.log", **env)
    try:
        await wait_ready(second)
        status, _, body = await post(url, readings)  # the client's retry
        assert status == 200, body
        assert (body["duplicate"], body["stored"]) == (2000, 500)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(15)
    rows = await db.fetch("SELECT meter_id, ts, count(*) AS n FROM meter_readings GROUP BY 1, 2")
    assert len(rows) == 2500
    assert all(r["n"] == 1 for r in rows)


async def test_tls_and_a_tokens_rate(
    settings: Settings, tokens_file: Path, db: asyncpg.Connection, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    cfg = settings.model_copy(
        update={
            "ingest_http_addr": "127.0.0.1:0",
            "ingest_tokens_file": tokens_file,
            "ingest_tls_cert": cert,
            "ingest_tls_key": key,
            "ingest_rate_per_token": 100.0,
        }
    )
    tls = ssl.create_default_context(cafile=str(cert))
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    batch = [meter(f"METER-{i:05d}", t0) for i in range(100)]
    async with serving(cfg) as (_, base):
        url = base.replace("http://", "https://").replace("127.0.0.1", "localhost") + PRIMARY
        status, _, body = await post(url, batch, tls=tls)
        assert status == 200, body
        assert body["stored"] == 100
        # The bucket holds one second's worth: the next 100 at once wait about a second.
        status, headers, body = await post(url, batch, tls=tls)
        assert status == 429, body
        assert headers["Retry-After"] == "1"
        assert "rate" in body["error"]
        # Another token has a bucket of its own.
        status, _, body = await post(url, batch, token=METERS_ONLY, tls=tls)
        assert status == 200, body
        assert body["duplicate"] == 100
    assert await db.fetchval("SELECT count(*) FROM meter_readings") == 100
