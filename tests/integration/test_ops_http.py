"""HTTP: fleetd's ops endpoint on a running daemon (health, readiness, metrics, 404, /healthz
turning 503 naming the broker when it goes away) and `fleetctl serve` as a process of its own
answering the /v1 analytics. The shared server itself: tests/unit/test_http_server.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from fleet_harness import MosquittoServer, free_port
from fleet_harness.ports import wait_for_port
from fleet_harness.publish import Publisher, readings
from fleetd import ops
from fleetd.service import Daemon
from fleetd.settings import Settings, load_settings
from fleetdb.connect import connect
from tests.integration.test_analytics import depot

pytestmark = pytest.mark.integration


async def get(
    port: int,
    target: str,
    method: str = "GET",
    *,
    headers: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 request: (status, headers, body)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
    )
    fields = {"Host": "localhost", "Connection": "close", **(headers or {})}
    extra = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    writer.write(f"{method} {target} HTTP/1.1\r\n{extra}\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    response_headers = dict(line.split(": ", 1) for line in lines[1:])
    if method != "HEAD":  # HEAD: Content-Length is that of the GET body, which is not sent
        assert int(response_headers["Content-Length"]) == len(body)
    return int(lines[0].split()[1]), response_headers, body


async def get_json(port: int, target: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    status, headers, body = await get(port, target, **kw)
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


async def wait_status(
    port: int, target: str, expected: int, within: float = 15
) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        status, body = await get_json(port, target)
        if status == expected:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{target}: {status} {body}, expected {expected}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def ops_daemon(broker: MosquittoServer, ingest_url: str) -> AsyncIterator[tuple[Daemon, int]]:
    """A daemon with ops.install() companions on an ephemeral HTTP port; yields (daemon, port)."""
    settings = load_settings(
        None,
        mqtt_url=broker.url(),
        database_url=ingest_url,
        client_id="fleetd-ops-http",
        flush_interval_ms=200,
        http_addr="127.0.0.1:0",
    )
    daemon = Daemon(settings)
    ops.install(daemon)
    server = ops.http_server(daemon)
    assert server is not None
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.ready.wait(), 20)
    await asyncio.wait_for(server.started.wait(), 5)
    assert server.port
    try:
        yield daemon, server.port
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, timeout=15)


async def test_endpoints(ops_daemon: tuple[Daemon, int], broker: MosquittoServer) -> None:
    daemon, port = ops_daemon
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    pub = Publisher(broker.url())
    await asyncio.to_thread(pub.publish, readings(3, 2, 2, start, timedelta(minutes=1)))
    pub.close()
    for _ in range(300):
        if daemon.counters.written >= 10:
            break
        await asyncio.sleep(0.05)

    status, body = await get_json(port, "/healthz")
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["broker_connected"] is True
    assert body["database_reachable"] is True
    assert body["written"] == 10
    status, body = await get_json(port, "/readyz")
    assert (status, body["status"]) == (200, "ok")

    status, headers, metrics = await get(port, "/metrics")
    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST
    text = metrics.decode()
    assert 'fleet_messages_received_total{kind="meter"} 6.0' in text
    assert 'fleet_rows_written_total{kind="vehicle"} 4.0' in text
    assert "fleet_flush_duration_seconds_bucket" in text
    # What config/prometheus/fleet-rules.yml alerts on.
    assert "fleet_broker_connected 1.0" in text
    assert "fleet_healthy 1.0" in text
    assert "fleet_last_commit_age_seconds " in text

    status, body = await get_json(port, "/nope?x=1")
    assert (status, body) == (404, {"error": "not found", "path": "/nope"})
    status, headers, empty = await get(port, "/healthz", method="HEAD")
    assert (status, empty) == (200, b"")
    status, _, _ = await get(port, "/healthz", method="POST")
    assert status == 405

    # Garbage and silence do not hurt the server.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x00\x01garbage\r\n\r\n")
    assert b" 400 " in await asyncio.wait_for(reader.read(), 5)
    writer.close()
    status, _ = await get_json(port, "/healthz")
    assert status == 200


async def test_unhealthy_when_broker_down(
    ops_daemon: tuple[Daemon, int], broker: MosquittoServer
) -> None:
    _, port = ops_daemon
    await wait_status(port, "/healthz", 200)
    await asyncio.to_thread(broker.stop_server)
    body = await wait_status(port, "/healthz", 503)
    assert body["status"] == "unhealthy"
    reasons = body["reasons"]
    assert isinstance(reasons, list)
    assert any("broker" in r for r in reasons), reasons
    body = await wait_status(port, "/readyz", 503)
    assert any("broker" in r for r in body["reasons"])  # type: ignore[attr-defined]

    await asyncio.to_thread(broker.start_server)
    await wait_status(port, "/healthz", 200, within=45)  # reconnect backoff


def test_install_without_http() -> None:
    settings = Settings.model_construct(**(Settings().model_dump() | {"http_addr": "off"}))
    daemon = Daemon(settings)
    ops.install(daemon)
    assert ops.http_server(daemon) is None
    assert len(daemon.companions) == 1  # the notifier only


SERVE_OUTPUT: list[str] = []


@contextlib.contextmanager
def fleetctl_serve(database_url: str, **extra_env: str) -> Iterator[int]:
    """`fleetctl serve` as a real process on a free port; yields the port. Its output is kept in
    SERVE_OUTPUT (last run) for tests that read the logs."""
    port = free_port()
    env = os.environ | {
        "FLEET_ANALYTICS_DATABASE_URL": database_url,
        "FLEET_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",  # must not be used
        "FLEET_API_ADDR": f"127.0.0.1:{port}",
        "FLEET_LOG_FORMAT": "json",
    }
    # A file, not a pipe: nobody reads a pipe until the end, and the access log would fill it.
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "fleetctl"), "serve"],
            env=env | extra_env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port)
            yield port
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            output.seek(0)
            out = output.read().decode()
            SERVE_OUTPUT[:] = [out]
            assert proc.returncode == 0, out[-5000:]


async def test_fleetctl_serve_answers_the_analytics_and_fleetd_does_not(
    ops_daemon: tuple[Daemon, int], database_url: str, analytics_url: str
) -> None:
    _, fleetd_port = ops_daemon
    assert (await get_json(fleetd_port, "/v1/current/all"))[0] == 404
    conn = await connect(database_url)
    try:
        await depot(conn)
    finally:
        await conn.close()
    with fleetctl_serve(analytics_url) as port:
        assert await get_json(port, "/healthz") == (200, {"status": "ok"})
        window = "start=2026-11-20T08:00:00Z&end=2026-11-20T11:00:00Z"
        status, body = await get_json(port, f"/v1/analytics/performance/V1?{window}")
        assert status == 200
        assert body["status"] == "optimal"
        assert len(body["hourly"]) == 3
        status, body = await get_json(port, f"/v1/analytics/fleet?{window}&sort=vehicle")
        assert status == 200
        assert body["totals"]["vehicles"] == 9
        status, body = await get_json(port, f"/v1/analytics/anomalies?{window}&threshold=0.7")
        assert [v["vehicleId"] for v in body["vehicles"]] == ["V3", "V4"]
        status, body = await get_json(port, f"/v1/analytics/chargers?{window}")
        assert status == 200
        # The depot charges at a constant rate every minute: DC and the meter's time rise
        # together, so no fit can tell the converter from standby.
        assert {c["status"] for c in body["chargers"]} == {"insufficient_data"}
        status, _, text = await get(port, "/metrics")  # the fleet gauges (no evaluation yet)
        assert status == 200
        assert b'fleet_alerts_open{kind="device_offline"} 0.0' in text
        status, body = await get_json(port, "/v1/alerts")
        assert (status, body["open"]) == (200, 0)
        status, body = await get_json(port, "/v1/current/vehicles/V1")
        assert status == 200
        assert body["devices"][0]["vehicleId"] == "V1"
        assert (await get_json(port, "/v1/current/vehicles/NOPE"))[0] == 404
        status, body = await get_json(port, "/v1/current/all")
        assert status == 200
        assert body["vehicles"]["count"] == 8
        assert (await get_json(port, "/v1/current/all/V1"))[0] == 404
        assert (await get_json(port, "/v1/analytics/performance/NOPE?hours=2"))[0] == 404
        status, body = await get_json(port, "/v1/analytics/fleet?start=yesterday")
        assert status == 400
        assert "RFC 3339" in body["error"]
        assert (await get_json(port, "/v1/analytics/fleet?hours=abc"))[0] == 400
        for bad in ("85", "0", "-0.5", "1.51", "nan"):
            status, body = await get_json(port, f"/v1/analytics/anomalies?{window}&threshold={bad}")
            assert status == 400, bad
            assert "(0, 1.5]" in body["error"], bad
        status, body = await get_json(port, f"/v1/analytics/anomalies?{window}&threshold=0.01")
        assert (status, body["threshold"], body["count"]) == (200, 0.01, 0)
        assert (await get_json(port, "/v1/current/cars"))[0] == 404


async def test_fleetctl_serve_health_names_an_unreachable_database() -> None:
    with fleetctl_serve(f"postgresql://nobody@127.0.0.1:{free_port()}/none") as port:
        status, body = await get_json(port, "/healthz")
    assert status == 503
    assert "database unreachable" in body["reasons"][0]  # type: ignore[index]


TOKEN = "s3cret-token-for-tests-0123456789"


async def test_fleetctl_serve_asks_for_the_bearer_token_on_v1_only(analytics_url: str) -> None:
    with fleetctl_serve(analytics_url, FLEET_API_TOKEN=TOKEN) as port:
        assert (await get_json(port, "/healthz"))[0] == 200  # health stays open
        status, headers, _ = await get(port, "/v1/current/all")
        assert status == 401
        assert headers["WWW-Authenticate"] == 'Bearer realm="fleet-telemetry"'
        for wrong in ("Bearer nope", f"Basic {TOKEN}", f"Bearer {TOKEN}x", ""):
            status, body = await get_json(port, "/v1/current/all", headers={"Authorization": wrong})
            assert status == 401, wrong
            assert "bearer token" in body["error"]
        status, body = await get_json(
            port, "/v1/current/all", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert (status, body["kind"]) == (200, "all")
    assert TOKEN not in SERVE_OUTPUT[0]


async def test_fleetctl_serve_logs_one_json_line_per_request_without_the_token(
    analytics_url: str,
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    targets = ("/healthz", "/v1/current/all?limit=2", f"/v1/current/all?token={TOKEN}", "/nope")
    with fleetctl_serve(analytics_url, FLEET_API_TOKEN=TOKEN) as port:
        statuses = [(await get(port, target, headers=auth))[0] for target in targets]
        statuses.append((await get(port, "/v1/alerts"))[0])  # no token: 401
    assert TOKEN not in SERVE_OUTPUT[0]
    events = [json.loads(line) for line in SERVE_OUTPUT[0].splitlines() if line.startswith("{")]
    access = [e for e in events if e["event"] == "http_access"]
    assert [(e["method"], e["path"], e["status"]) for e in access] == [
        ("GET", "/healthz", 200),
        ("GET", "/v1/current/all", 200),
        ("GET", "/v1/current/all", 400),  # token is not a parameter of the route
        ("GET", "/nope", 404),
        ("GET", "/v1/alerts", 401),
    ]
    assert statuses == [200, 200, 400, 404, 401]
    assert [e["query"] for e in access[:3]] == [[], ["limit"], ["token"]]
    for e in access:
        assert e["level"] == "info"
        assert e["server"] == "fleetctl-serve"
        assert e["remote"] == "127.0.0.1"
        assert e["bytes"] > 0
        assert 0 <= e["duration_ms"] < 60_000


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and its key, made by openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_fleetctl_serve_reads_the_token_from_a_file_and_serves_tls(
    analytics_url: str, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(cafile=str(cert))
    env = {
        "FLEET_API_TOKEN_FILE": str(tmp_path / "token"),
        "FLEET_API_TLS_CERT": str(cert),
        "FLEET_API_TLS_KEY": str(key),
    }
    with fleetctl_serve(analytics_url, **env) as port:
        status, body = await get_json(
            port, "/v1/current/all", headers={"Authorization": f"Bearer {TOKEN}"}, tls=tls
        )
        assert (status, body["kind"]) == (200, "all")
        assert (await get_json(port, "/v1/current/all", tls=tls))[0] == 401
    assert TOKEN not in SERVE_OUTPUT[0]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLEET_API_ADDR": "0.0.0.0:9109"}, "is not loopback: set FLEET_API_TOKEN"),
        ({"FLEET_API_TOKEN": "short"}, "at least 16 characters"),
        ({"FLEET_API_TOKEN_FILE": "/nonexistent/token"}, "FLEET_API_TOKEN_FILE /nonexistent"),
        ({"FLEET_API_TLS_CERT": "/tmp/x.pem"}, "go together"),
    ],
)
def test_fleetctl_serve_refuses_a_bad_configuration_in_one_line(
    env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "fleetctl"), "serve"],
        env=os.environ | {"FLEET_DATABASE_URL": "postgresql://x@127.0.0.1:1/x"} | env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "short" not in result.stderr


async def test_assignments_over_http_need_the_admin_login(
    database_url: str, analytics_url: str, admin_url: str
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    items = [
        {"vehicleId": f"V{i}", "meterId": f"M{i}", "validFrom": "2026-11-01T00:00:00Z"}
        for i in range(1, 4)
    ]
    body = json.dumps(items)
    with fleetctl_serve(analytics_url, FLEET_API_TOKEN=TOKEN) as port:
        status, answer = await post_json(port, "/v1/assignments", body, headers=auth)
        assert status == 403
        assert "FLEET_ADMIN_DATABASE_URL" in answer["error"]
    with fleetctl_serve(
        analytics_url, FLEET_API_TOKEN=TOKEN, FLEET_ADMIN_DATABASE_URL=admin_url
    ) as port:
        assert (await post_json(port, "/v1/assignments", body))[0] == 401
        assert await post_json(port, "/v1/assignments", body, headers=auth) == (
            200,
            {
                "imported": 3,
                "unchanged": 0,
                "vehicles": 3,
                "neverSeen": {"vehicles": ["V1", "V2", "V3"], "meters": ["M1", "M2", "M3"]},
            },
        )
        status, answer = await post_json(port, "/v1/assignments", "{nope", headers=auth)
        assert (status, answer["error"][:16]) == (400, "body is not JSON")
        bad = json.dumps([*items[:1], {"vehicleId": "V9", "meterId": "M9"}])
        status, answer = await post_json(port, "/v1/assignments", bad, headers=auth)
        assert (status, answer["error"]) == (
            400,
            "item 2: valid_from is required (RFC 3339 with an offset)",
        )
        again = json.dumps(
            [
                {
                    **items[0],
                    "meterId": "M7",
                    "validFrom": "2026-10-01T00:00:00Z",
                    "validTo": "2026-11-05T00:00:00Z",
                }
            ]
        )
        status, answer = await post_json(port, "/v1/assignments", again, headers=auth)
        assert status == 400
        assert answer["error"].startswith("item 1: V1 would have two meters at once")
        status, answer = await get_json(port, "/v1/assignments?open=true", headers=auth)
        assert (status, answer["count"]) == (200, 3)
        status, answer = await get_json(port, "/v1/assignments?vehicleId=V2", headers=auth)
        assert [a["meterId"] for a in answer["assignments"]] == ["M2"]


async def post_json(
    port: int, target: str, body: str, *, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """One POST with a JSON body: (status, JSON answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = body.encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(
        f"POST {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{extra}\r\n".encode()
        + data
    )
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    await writer.wait_closed()
    head, _, answer = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(answer)


async def test_fleetctl_serve_refuses_bad_parameters_and_foreign_hosts(
    database_url: str, analytics_url: str
) -> None:
    with fleetctl_serve(analytics_url) as port:
        for target, reason in (
            ("/v1/analytics/fleet?hours=1e9", "hours must be a number in (0, 87600]"),
            ("/v1/analytics/fleet?hours=inf", "hours must be a number in (0, 87600]"),
            (
                "/v1/analytics/fleet?start=0001-01-01T00:00:00Z&end=9999-12-31T00:00:00Z",
                "start must be a time in the years 2000 to 2200",
            ),
            ("/v1/analytics/performance/V%001?hours=2", "vehicleId must not contain control"),
            ("/v1/current/vehicles/V%00", "deviceId must not contain control"),
            ("/v1/rejects?limit=100000", "limit must be a whole number in [0, 1000]"),
            ("/v1/analytics/fleet?sort=nope", "sort must be one of efficiency"),
        ):
            status, body = await get_json(port, target)
            assert (status, body["error"][: len(reason)]) == (400, reason), target
        # DNS rebinding: without a token, only loopback names are answered.
        status, body = await get_json(port, "/v1/current/all", headers={"Host": "rebind.example"})
        assert status == 400
        status, headers, _ = await get(port, "/")
        assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


async def test_fleetctl_serve_health_is_public_cached_and_says_no_more() -> None:
    with fleetctl_serve(f"postgresql://nobody@127.0.0.1:{free_port()}/none") as port:
        answers = [await get_json(port, "/healthz") for _ in range(5)]
    assert answers[0] == (503, {"status": "unhealthy", "reasons": ["database unreachable"]})
    assert all(a == answers[0] for a in answers)
    # One database attempt logged for five calls within the second.
    assert SERVE_OUTPUT[0].count("health_check_failed") <= 2
