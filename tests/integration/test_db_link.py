"""A database link cut for real: fleetd runs inside a network namespace, PostgreSQL in the root
one, and the veth between them drops every packet of the database's port for 30 s (no reset:
only timeouts can tell). Everything published (each message PUBACKed) must be stored exactly
once, /healthz must say "database unreachable" within 20 s of the cut, and every writer must be
back within a few seconds of the link's return."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleet_harness import MosquittoServer, NetNamespace, PostgresServer, free_port
from fleet_harness.netns import netns_unavailable
from fleet_harness.publish import readings
from fleetdb.connect import connect
from fleetdb.migrate import migrate
from tests.conftest import assert_rollups_match_raw, total_readings, wait_for_count
from tests.evidence import log_events
from tests.integration.test_ingest import BOTH, _stored_keys

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(netns_unavailable() is not None, reason=netns_unavailable() or ""),
]

CUT_S = 30.0
RATE_PER_S = 200
NOTICED_WITHIN_S = 20.0  # the promise (docs/operations.md)
RECOVERED_WITHIN_S = 5.0  # the promise, from the link's return to every writer reconnected
MARGIN_S = 5.0  # a busy 2-core machine
HTTP_PORT = 9108  # inside the namespace: nothing else listens there
INGEST = "dblink_ingest"


@dataclass
class Stream:
    """A paced QoS 1 publisher on its own thread that records which messages the broker acked."""

    url: str
    messages: list[tuple[str, bytes]]
    sent: dict[int, int] = field(default_factory=dict)  # mid -> index in messages
    acked: set[int] = field(default_factory=set)
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        host, port = self.url.removeprefix("mqtt://").split(":")
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="dblink-stream")
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)

        def on_publish(*args: Any) -> None:
            # No lock of ours here: paho calls this holding its own, which publish() takes too.
            self.acked.add(args[2])  # the mid; set.add is atomic

        client.on_publish = on_publish
        try:
            client.connect(host, int(port))
            client.loop_start()
            started = time.monotonic()
            for i, (topic, payload) in enumerate(self.messages):
                # Paced like devices, not in one burst: the cut happens mid-stream.
                if self.stop.wait(max(0.0, started + i / RATE_PER_S - time.monotonic())):
                    return
                info = client.publish(topic, payload, qos=1)
                self.sent[info.mid] = i
            deadline = time.monotonic() + 60
            while len(self.acked) < len(self.messages) and time.monotonic() < deadline:
                if self.stop.wait(0.05):
                    return
            client.disconnect()
            client.loop_stop()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            self.done.set()


@pytest.fixture
def ns() -> Iterator[NetNamespace]:
    with NetNamespace() as namespace:
        yield namespace


async def _prepare(pg: PostgresServer) -> str:
    """Migrate the harness's `fleet` database and make the least-privilege ingest login."""
    conn = await connect(pg.url)
    try:
        await migrate(conn)
        await conn.execute(f'CREATE ROLE "{INGEST}" LOGIN IN ROLE fleet_ingest')
    finally:
        await conn.close()
    return f"postgresql://{INGEST}@127.0.0.1:{pg.port}/{pg.database}"


async def _health(host: str) -> tuple[int, dict[str, Any]]:
    """GET /healthz of the fleetd in the namespace: (status, body); (0, {}) when it does not
    answer (not started yet)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, HTTP_PORT), 2)
    except (OSError, TimeoutError):
        return 0, {}
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def _until(host: str, healthy: bool, within_s: float) -> tuple[float, dict[str, Any]]:
    """Poll /healthz until it is (un)healthy; the monotonic time it was first seen so."""
    deadline = time.monotonic() + within_s
    while True:
        status, body = await _health(host)
        if (status == 200) == healthy and status:
            return time.monotonic(), body
        if time.monotonic() > deadline:
            raise AssertionError(f"/healthz still {status} {body} after {within_s} s")
        await asyncio.sleep(0.25)


async def _until_unreachable(host: str, within_s: float) -> tuple[float, str]:
    """Poll /healthz until one of its reasons is "database unreachable"; when, and the reason."""
    deadline = time.monotonic() + within_s
    while True:
        _, body = await _health(host)
        for reason in body.get("reasons", []):
            if reason.startswith("database unreachable"):
                return time.monotonic(), reason
        if time.monotonic() > deadline:
            raise AssertionError(f"/healthz never said database unreachable: {body}")
        await asyncio.sleep(0.25)


async def _lingering(pg: PostgresServer) -> int:
    """Backends of the ingest login "idle in transaction" for more than 20 s: the server must
    let go of what a vanished client had open (idle_in_transaction_session_timeout, keepalive)."""
    admin = await connect(pg.url)
    try:
        n: int = await admin.fetchval(
            """SELECT count(*) FROM pg_stat_activity WHERE usename = $1
                 AND state LIKE 'idle in transaction%'
                 AND state_change < now() - interval '20 seconds'""",
            INGEST,
        )
    finally:
        await admin.close()
    return n


def _wall(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


async def test_a_silently_cut_database_link_loses_nothing_and_is_noticed_and_recovered(
    ns: NetNamespace, tmp_path: Path
) -> None:
    # 200 + 200 devices, one reading a minute each: 45 s of stream at 200 readings/s.
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)
    msgs = readings(100, 100, 45, start, timedelta(minutes=1))
    pg_server = PostgresServer(listen=("127.0.0.1", ns.host_ip), trust=(str(ns.subnet),))
    mqtt_port_ns = free_port()  # a second listener, on the root side of the veth
    with pg_server as pg:
        url = await _prepare(pg)
        with MosquittoServer(extra_conf=f"listener {mqtt_port_ns} {ns.host_ip}") as broker:
            log = tmp_path / "fleetd.log"
            env = os.environ | {
                "FLEET_MQTT_URL": f"mqtt://{ns.host_ip}:{mqtt_port_ns}",
                "FLEET_DATABASE_URL": ns.host_url(url),
                "FLEET_CLIENT_ID": "fleetd-dblink",
                "FLEET_FLUSH_INTERVAL_MS": "200",
                "FLEET_COMPACT_AFTER_DAYS": "0",
                "FLEET_HTTP_ADDR": f"{ns.ns_ip}:{HTTP_PORT}",
                "FLEET_LOG_FORMAT": "json",
                "FLEET_DB_WRITERS": "2",
            }
            with log.open("wb") as out:
                fleetd = ns.popen(
                    [str(Path(sys.executable).parent / "fleetd"), "run"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            await _until(ns.ns_ip, healthy=True, within_s=30)

            stream = Stream(broker.url(), msgs)
            thread = threading.Thread(target=stream.run, name="stream", daemon=True)
            thread.start()
            try:
                await asyncio.sleep(5)
                ns.cut(pg.port)
                cut_mono, cut_wall = time.monotonic(), time.time()
                noticed, reason = await _until_unreachable(ns.ns_ip, within_s=CUT_S - 1)
                await asyncio.sleep(max(0.0, cut_mono + CUT_S - time.monotonic()))
                lingering = await _lingering(pg)
                ns.restore()
                restore_mono, restore_wall = time.monotonic(), time.time()
                healthy_again, _ = await _until(ns.ns_ip, healthy=True, within_s=30)
                await asyncio.to_thread(thread.join, 120)
            finally:
                stream.stop.set()
            assert stream.error is None
            db = await connect(pg.url)
            try:
                await wait_for_count(db, BOTH, len(msgs), timeout_s=60)
                fleetd.terminate()
                assert await asyncio.to_thread(fleetd.wait, 15) == 0
                stored = await _stored_keys(db)
                total = await total_readings(db)
                await assert_rollups_match_raw(db)
            finally:
                await db.close()

    # Every message was acked by the broker, and exactly those readings are stored once each.
    assert len(stream.sent) == len(msgs)
    assert stream.acked == set(stream.sent), "the publisher did not get a PUBACK for each"
    published = {
        (
            json.loads(p).get("meterId") or json.loads(p)["vehicleId"],
            datetime.fromisoformat(json.loads(p)["timestamp"]),
        )
        for _, p in msgs
    }
    assert stored == published
    assert total == len(msgs)

    print(  # the figures, for the report (pytest -s)
        f"\nnoticed after {noticed - cut_mono:.1f} s ({reason}); healthy "
        f"{healthy_again - restore_mono:.1f} s after the link returned"
    )
    assert noticed - cut_mono <= NOTICED_WITHIN_S + MARGIN_S, reason
    # The reason says what happened: the kernel gave up on the socket, or the write timed out.
    assert "Connection timed out" in reason or "no answer within" in reason, reason
    assert lingering == 0
    # Each writer reconnected after the link returned, and soon.
    connects = [e for e in log_events(log, "database_writer_connected") if _wall(e) > cut_wall]
    for writer in (0, 1):
        after = [_wall(e) - restore_wall for e in connects if e["writer"] == writer]
        assert after, f"writer {writer} never reconnected"
        assert min(after) >= 0, f"writer {writer} connected during the cut"
        print(f"writer {writer} reconnected {min(after):.1f} s after the link returned")
        assert min(after) <= RECOVERED_WITHIN_S + MARGIN_S
    assert healthy_again - restore_mono <= RECOVERED_WITHIN_S + MARGIN_S


# Inside the namespace: connect as a writer does, print which server answered and how long it
# took (or the error).
_WRITER_PROBE = """
import asyncio, sys, time
from fleetdb.connect import connect_writer
from fleetdb.replication import replication

async def main():
    started = time.monotonic()
    try:
        conn = await connect_writer(sys.argv[1], write_timeout_s=15)
    except Exception as exc:
        print("error", round(time.monotonic() - started, 1), type(exc).__name__, exc)
        return
    print((await replication(conn)).server, round(time.monotonic() - started, 1))
    conn.terminate()

asyncio.run(main())
"""


async def test_a_writer_reaches_the_promoted_standby_past_a_silent_primary(
    ns: NetNamespace,
) -> None:
    """Failover when the old primary is not down but unreachable without a word: asyncpg's own
    connect timeout spans every host, so the silent first host would use all of it and the
    promoted standby would never be tried. Each host gets its own."""
    reachable = {"listen": ("127.0.0.1", ns.host_ip), "trust": (str(ns.subnet),)}
    with PostgresServer(**reachable) as primary, PostgresServer(standby_of=primary) as standby:
        url = (
            f"postgresql://fleet@{ns.host_ip}:{primary.port},{ns.host_ip}:{standby.port}"
            "/fleet?target_session_attrs=read-write"
        )
        probe = [sys.executable, "-c", _WRITER_PROBE, url]
        assert ns.run(probe).stdout.split()[0] == f"{ns.host_ip}:{primary.port}"

        ns.cut(primary.port)
        said = ns.run(probe).stdout
        assert said.startswith("error"), said
        assert f"{ns.host_ip}:{primary.port} did not answer within 5 s" in said
        assert f"{ns.host_ip}:{standby.port} is read-only" in said

        await asyncio.to_thread(standby.promote)
        server, seconds = ns.run(probe).stdout.split()
        print(f"\nconnected to the promoted standby in {seconds} s past the silent primary")
        assert server == f"{ns.host_ip}:{standby.port}"
        assert float(seconds) < 5 + MARGIN_S  # the primary's 5 s, then the standby at once
