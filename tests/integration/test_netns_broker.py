"""A broker link cut for real: fleetd runs in a network namespace, Mosquitto in the root one,
and iptables drops the MQTT packets both ways for a minute (no reset: only silence). /healthz
says "broker silent" within 1.5 x keepalive, fleetd reconnects once the link is back, and
exactly what the broker acknowledged to the publisher is stored, once. And a link cut while
fleetd has paused reading is still noticed in time (judged by TCP acknowledgements)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from fleet_harness import MosquittoServer, PostgresServer, free_port
from fleet_harness.netns import NetNamespace, netns_unavailable
from fleet_harness.publish import Publisher, readings
from fleet_harness.rows import COUNT_SQL
from fleetd.mqtt.subscriber import MqttSubscriber
from fleetdb.connect import connect
from fleetdb.migrate import migrate
from tests.conftest import total_readings, wait_for_count

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(netns_unavailable() is not None, reason=netns_unavailable() or ""),
]

BOTH = COUNT_SQL  # history rows of both kinds
KEEPALIVE_S = 10
CUT_S = 60
MARGIN_S = 3.0  # the health poll's period, a busy machine's scheduling


def _health(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError as exc:
        return 0, {"error": str(exc)}


REPO = Path(__file__).resolve().parents[2]


def _keys(msgs: list[tuple[str, bytes]]) -> set[tuple[str, datetime]]:
    out = set()
    for _, payload in msgs:
        body = json.loads(payload)
        device = body.get("meterId") or body["vehicleId"]
        out.add((device, datetime.fromisoformat(body["timestamp"])))
    return out


@pytest.fixture
def ns() -> Iterator[NetNamespace]:
    with NetNamespace() as namespace:
        yield namespace


async def _wait_health(url: str, *, ok: bool, timeout_s: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = await asyncio.to_thread(_health, url)
        if (status == 200) == ok and status:
            return body
        assert time.monotonic() < deadline, f"/healthz still {status} {body}"
        await asyncio.sleep(0.25)


@pytest.mark.timeout(120)
async def test_a_silently_cut_broker_link_is_noticed_in_time_and_loses_nothing(
    ns: NetNamespace, tmp_path: Path
) -> None:
    port = free_port()
    with (
        PostgresServer(listen=("127.0.0.1", ns.host_ip), trust=(str(ns.subnet),)) as pg,
        MosquittoServer(port=port, extra_conf=f"listener {port} {ns.host_ip}") as broker,
    ):
        conn = await connect(pg.url)
        try:
            await migrate(conn)
            http = f"{ns.ns_ip}:{free_port()}"
            health_url = f"http://{http}/healthz"
            log_path = tmp_path / "fleetd.log"
            with log_path.open("wb") as log:
                ns.popen(
                    [str(Path(sys.executable).parent / "fleetd"), "run"],
                    env=os.environ
                    | {
                        "FLEET_MQTT_URL": ns.host_url(broker.url()),
                        "FLEET_DATABASE_URL": ns.host_url(pg.url),
                        "FLEET_CLIENT_ID": "fleetd-netns",
                        "FLEET_MQTT_KEEPALIVE_S": str(KEEPALIVE_S),
                        "FLEET_FLUSH_INTERVAL_MS": "200",
                        "FLEET_COMPACT_AFTER_DAYS": "0",
                        "FLEET_HTTP_ADDR": http,
                        "FLEET_LOG_FORMAT": "json",
                    },
                    stdout=log,
                    stderr=log,
                )
            await _wait_health(health_url, ok=True, timeout_s=20)
            await _run_cut(ns, broker, conn, health_url, log_path)
        finally:
            await conn.close()


async def _run_cut(
    ns: NetNamespace,
    broker: MosquittoServer,
    conn: asyncpg.Connection,
    health_url: str,
    log_path: Path,
) -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    msgs = readings(100, 100, 75, start, timedelta(minutes=1))  # 200 per second for 75 s
    errors: list[BaseException] = []
    pub = Publisher(broker.url(), "streamer", window=200)

    def stream() -> None:
        try:
            for i in range(0, len(msgs), 100):
                began = time.monotonic()
                pub.publish(msgs[i : i + 100])
                time.sleep(max(0.0, 0.5 - (time.monotonic() - began)))
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        await wait_for_count(conn, BOTH, 600, timeout_s=20)
        cut = time.monotonic()
        await asyncio.to_thread(ns.cut, broker.port)
        body = await _wait_health(health_url, ok=False, timeout_s=1.5 * KEEPALIVE_S + MARGIN_S)
        silent_s = time.monotonic() - cut
        reasons = body["reasons"]
        assert isinstance(reasons, list)
        assert any(str(r).startswith("broker silent for ") for r in reasons), body
        assert body["broker_connected"] is True  # noticed before fleetd gives the link up
        assert silent_s <= 1.5 * KEEPALIVE_S + MARGIN_S
        await asyncio.sleep(CUT_S - (time.monotonic() - cut))
        await asyncio.to_thread(ns.restore)
        restored = time.monotonic()
        await _wait_health(health_url, ok=True, timeout_s=45)
        back_s = time.monotonic() - restored
    finally:
        await asyncio.to_thread(thread.join)
        pub.close()
    assert not errors, errors
    assert pub.stats.acked == len(msgs)
    assert await wait_for_count(conn, BOTH, len(msgs), timeout_s=30) == len(msgs)
    await asyncio.sleep(1.0)  # a late redelivery would show up as an extra row
    stored = await conn.fetch(
        "SELECT meter_id AS id, ts FROM meter_readings UNION ALL "
        "SELECT vehicle_id, ts FROM vehicle_readings"
    )
    assert {(r["id"], r["ts"]) for r in stored} == _keys(msgs)
    assert await total_readings(conn) == len(msgs)
    lines = (await asyncio.to_thread(log_path.read_text)).splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    gave_up = [e for e in events if e.get("event") == "broker_silent"]
    assert gave_up, "fleetd never gave the silent link up"
    print(
        f"\nbroker link cut {CUT_S} s (keepalive {KEEPALIVE_S} s): /healthz unhealthy after "
        f"{silent_s:.1f} s, fleetd gave up after {gave_up[0]['seconds']} s of silence, healthy "
        f"again {back_s:.1f} s after the link returned; {len(msgs)} published and PUBACKed, "
        f"{len(stored)} stored"
    )


async def test_a_link_cut_while_reading_is_paused_is_noticed_in_time(ns: NetNamespace) -> None:
    # Paused, the broker's packets wait unread: only the TCP acknowledgements of our PINGREQs
    # tell a live link (acked) from a dead one. The broker node runs inside the namespace here.
    keepalive_s = 2
    port = free_port()
    node = ns.popen(
        [sys.executable, "-m", "tests.fake_broker", ns.ns_ip, str(port), "accept"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert node.stdout is not None
    assert await asyncio.to_thread(node.stdout.readline) == "listening\n"
    sub = MqttSubscriber(
        url=f"mqtt://{ns.ns_ip}:{port}",
        client_id="c",
        on_message=lambda *_: None,
        keepalive_s=keepalive_s,
    )
    task = asyncio.create_task(sub.run())
    try:
        for _ in range(100):
            if sub.subscribed.is_set():
                break
            await asyncio.sleep(0.05)
        sub.pause()
        await asyncio.sleep(2 * keepalive_s)  # pings acknowledged by the peer's kernel
        assert sub.connected
        assert sub.silent_s() is None
        cut = time.monotonic()
        await asyncio.to_thread(ns.cut)
        silent_at = None
        while sub.connected:
            if silent_at is None and sub.silent_s() is not None:
                silent_at = time.monotonic() - cut
            assert time.monotonic() - cut < 1.5 * keepalive_s + 1.0, "paused link not dropped"
            await asyncio.sleep(0.02)
        assert silent_at is not None
        assert sub.paused
        print(
            f"\npaused link cut (keepalive {keepalive_s} s): silent after {silent_at:.1f} s, "
            f"dropped after {time.monotonic() - cut:.1f} s"
        )
    finally:
        await sub.disconnect()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
