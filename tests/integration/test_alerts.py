"""Alerts on real PostgreSQL and Mosquitto: opened once, resolved when the condition clears,
remembered across a restart, delivered over MQTT (retained while open, cleared when resolved)
and to a webhook that fails first (retried, same idempotency key)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleet_harness import MosquittoServer
from fleetctl.alerts.delivery import deliver_due, webhook_post, webhook_session
from fleetctl.alerts.evaluation import AlertConfig, evaluate
from fleetctl.alerts.store import fleet_metrics, list_alerts
from fleetdb.connect import connect
from fleetsim.direct import backfill_direct
from fleetsim.model import Fleet, FleetConfig

pytestmark = pytest.mark.integration

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
CFG = FleetConfig(meters=20, vehicles=20, seed=4, degraded_fraction=0.2, critical_fraction=0.1)


class Hook:
    """A webhook receiver that answers 500 to its first request, then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, object]]] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {
            k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
        }
        body = await reader.readexactly(int(headers["content-length"]))
        self.requests.append((headers["idempotency-key"], json.loads(body)))
        status = "500 Oops" if len(self.requests) == 1 else "200 OK"
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    h = Hook()
    server = await asyncio.start_server(h.handle, "127.0.0.1", 0)
    h.port = server.sockets[0].getsockname()[1]
    yield h
    server.close()


def _retained(broker: MosquittoServer) -> dict[str, dict[str, object]]:
    out = subprocess.run(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-t",
            "fleet/alerts/#",
            "-v",
            "--retained-only",
            "-W",
            "2",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    found = {}
    for line in out.splitlines():
        topic, _, payload = line.partition(" ")
        found[topic] = json.loads(payload)
    return found


async def test_alerts_open_once_resolve_and_are_delivered(
    database_url: str, admin_url: str, broker: MosquittoServer, hook: Hook
) -> None:
    await backfill_direct(database_url, CFG, END - timedelta(hours=26), END)
    webhook = f"http://127.0.0.1:{hook.port}/alerts"
    config = AlertConfig(channels=("mqtt", webhook))
    conn: asyncpg.Connection = await connect(admin_url)  # the evaluator's login: fleet_admin
    try:
        first = await evaluate(conn, config, END)
        fleet = Fleet(CFG)
        bands = zip(fleet.meter_ids, fleet.meter_band, strict=True)
        faulty = {(f"charger_{band}", m) for m, band in bands if band != "normal"}
        assert {a for a in first.opened if a[0].startswith("charger_")} == faulty
        # The billed ratio flags those chargers' vehicles too; nothing else is wrong.
        assert {k for k, _ in first.opened} <= {
            "charger_critical",
            "charger_degraded",
            "billed_critical",
            "billed_degraded",
        }
        assert first.resolved == []
        # Again, and after a "restart" (a new connection): nothing fires twice.
        assert (await evaluate(conn, config, END)).opened == []
    finally:
        await conn.close()
    conn = await connect(admin_url)
    try:
        assert (await evaluate(conn, config, END)).opened == []
        # Two hours later every device is silent: offline alerts open, charger alerts stay.
        later = await evaluate(conn, config, END + timedelta(hours=2))
        assert {k for k, _ in later.opened} == {"device_offline"}
        assert len(later.opened) == 40
        # Days later the window holds no charging: the charger alerts resolve.
        quiet = await evaluate(conn, config, END + timedelta(days=3))
        assert {a for a in quiet.resolved if a[0].startswith("charger_")} == faulty
        listed = await list_alerts(conn, recent_h=24 * 30)
        assert listed["openByKind"] == {"device_offline": 40}
        # The fleet gauges `fleetctl serve` exports, as the last evaluation saw them.
        text = (await fleet_metrics(conn, END + timedelta(days=3, minutes=5))).decode()
        assert 'fleet_alerts_open{kind="device_offline"} 40.0' in text
        assert 'fleet_alerts_open{kind="charger_critical"} 0.0' in text
        assert "fleet_alert_evaluation_age_seconds 300.0" in text

        # Deliveries: MQTT retained while open, cleared once resolved; the webhook's first
        # answer is a 500, so its first delivery is retried with the same key.
        assert await deliver_due(conn, broker.url()) != (0, 0)
        retained = _retained(broker)
        assert len(retained) == 40
        assert all(t.startswith("fleet/alerts/device_offline/") for t in retained)
        assert all(m["event"] == "open" for m in retained.values())
        pending = await conn.fetchval(
            "SELECT count(*) FROM fleet_alert_deliveries WHERE delivered_at IS NULL"
        )
        assert pending == 1  # the webhook delivery that met the 500
        # Due again after the backoff (5 s doubling, capped at 5 min): 10 min later.
        await deliver_due(conn, broker.url(), datetime.now(UTC) + timedelta(minutes=10))
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM fleet_alert_deliveries WHERE delivered_at IS NULL"
            )
            == 0
        )
        keys = [k for k, _ in hook.requests]
        assert keys.count(keys[0]) == 2  # the retry carries the failed attempt's key
        assert keys[-1] == keys[0]
        assert len(set(keys)) == len(keys) - 1
        events = {(b["event"], b["alert"]["kind"]) for _, b in hook.requests}
        assert ("resolve", "charger_critical") in events
    finally:
        await conn.close()


async def test_webhook_credentials_go_in_authorization_never_in_host() -> None:
    seen: list[dict[str, str]] = []

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        seen.append(
            {"line": lines[0]}
            | {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        )
        await reader.readexactly(int(seen[-1]["content-length"]))
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(receive, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with webhook_session() as session:
            url = f"http://alice:p%40ss@127.0.0.1:{port}/hook?x=1"
            await webhook_post(session, url, b'{"event":"open"}', "key-1")
    finally:
        server.close()
    (request,) = seen
    assert request["line"] == "POST /hook?x=1 HTTP/1.1"
    assert request["host"] == f"127.0.0.1:{port}"
    assert request["authorization"] == "Basic " + base64.b64encode(b"alice:p@ss").decode()
    assert request["idempotency-key"] == "key-1"
    assert request["content-type"] == "application/json"
