"""fleetd's writer connections against a real PostgreSQL: they probe a silent peer themselves,
give up a late write by terminating (no cancel request), retry "no writable host" like an
outage until a standby is promoted, and tell whether commits wait for a synchronous standby."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import pytest
import structlog

from fleet_harness import PostgresServer
from fleetd.ingest.batcher import Batch, Envelope
from fleetd.ingest.flusher import Flusher
from fleetd.metrics import Metrics
from fleetdb.connect import (
    TRANSIENT_ERRORS,
    USER_TIMEOUT_MS,
    WriteTimeoutError,
    connect,
    connect_writer,
    terminate_if_late,
)
from fleetdb.ingest.messages import MeterReading
from fleetdb.migrate import migrate
from fleetdb.replication import replication

pytestmark = pytest.mark.integration

READ_WRITE = "target_session_attrs=read-write"


def _batch(n: int) -> Batch:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    return Batch(
        [
            Envelope(MeterReading(f"METER-{i:05d}", ts, 1.5, 230.0), ts, 0.0, i, 1, 1)
            for i in range(1, n + 1)
        ]
    )


def _gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("fleet_db_synchronous_replication")


async def test_writer_connections_probe_a_silent_peer_and_bound_their_sessions(
    ingest_url: str,
) -> None:
    conn = await connect_writer(ingest_url, write_timeout_s=15)
    try:
        sock = conn._transport.get_extra_info("socket")  # type: ignore[attr-defined]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 5
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == USER_TIMEOUT_MS
        # The server side: a statement and an abandoned transaction are bounded, and the
        # backend probes its own socket (it notices a vanished fleetd too).
        assert await conn.fetchval("SHOW statement_timeout") == "15s"
        assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") == "15s"
        assert await conn.fetchval("SHOW tcp_keepalives_idle") == "5"
        assert await conn.fetchval("SHOW tcp_user_timeout") == str(USER_TIMEOUT_MS)
    finally:
        await conn.close()


async def test_maintenance_connections_probe_a_silent_peer_too(ingest_url: str) -> None:
    # Retention, migrate and compaction connect with connect(): a dead link fails their socket
    # instead of leaving them on command_timeout's cancel request to the dead host.
    conn = await connect(ingest_url, application_name="fleetd-retention")
    try:
        sock = conn._transport.get_extra_info("socket")  # type: ignore[attr-defined]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == USER_TIMEOUT_MS
    finally:
        await conn.close()


async def test_a_late_write_is_terminated_without_a_cancel_request(ingest_url: str) -> None:
    conn = await connect_writer(ingest_url, write_timeout_s=15)
    await conn.execute("SET statement_timeout = 0")  # only the client's watchdog is left
    started = time.monotonic()
    with pytest.raises(WriteTimeoutError, match=r"no answer within 1 s; connection terminated"):
        await terminate_if_late(conn, conn.execute("SELECT pg_sleep(30)"), 1.0)
    assert time.monotonic() - started < 5
    assert conn.is_closed()
    assert issubclass(WriteTimeoutError, TRANSIENT_ERRORS)


@pytest.fixture
async def standby(
    pg_server: PostgresServer | None, database_url: str
) -> AsyncIterator[PostgresServer]:
    """A hot standby of the harness's primary, taken after this test's database was made."""
    if pg_server is None:
        pytest.skip("a standby needs the harness's own primary (FLEET_TEST_DATABASE_URL is set)")
    del database_url  # requested for its order only
    with PostgresServer(standby_of=pg_server) as server:
        yield server


async def test_no_writable_host_is_retried_until_a_standby_is_promoted(
    ingest_url: str, standby: PostgresServer
) -> None:
    parts = urlsplit(ingest_url)
    # Two spellings of the standby: every host answers, none is writable.
    hosts = f"127.0.0.1:{standby.port},localhost:{standby.port}"
    url = parts._replace(
        netloc=f"{parts.username}@{hosts}", query="target_session_attrs=read-write"
    )
    flusher = Flusher(url.geturl(), Metrics(), writers=1)
    write = asyncio.create_task(flusher.write(_batch(10)))
    try:
        deadline = time.monotonic() + 20
        while not (flusher.last_error or "").startswith("TargetServerAttributeNotMatched"):
            assert time.monotonic() < deadline, flusher.last_error
            assert not write.done()
            await asyncio.sleep(0.05)
        assert "no writable host" in (flusher.last_error or "")
        assert not flusher.healthy
        await asyncio.to_thread(standby.promote)
        result = await asyncio.wait_for(write, timeout=20)
    finally:
        write.cancel()
        await flusher.close()
    assert result.meters_inserted == 10
    assert flusher.healthy


async def _pair_database(primary: PostgresServer) -> str:
    """Migrate `primary`'s fleet database; return the URL of a least-privilege ingest login."""
    conn = await connect(primary.url)
    try:
        await migrate(conn)
        await conn.execute("CREATE ROLE writer_login LOGIN IN ROLE fleet_ingest")
    finally:
        await conn.close()
    return f"postgresql://writer_login@127.0.0.1:{primary.port}/{primary.database}"


async def _set_sync(primary: PostgresServer, names: str) -> None:
    conn = await asyncpg.connect(primary.url)
    try:
        await conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def test_fleetd_tells_and_exports_whether_commits_wait_for_a_synchronous_standby() -> None:
    with PostgresServer() as primary, PostgresServer(standby_of=primary):
        url = await _pair_database(primary)
        await _set_sync(primary, "*")
        metrics = Metrics()
        assert _gauge(metrics) == -1  # not asked yet
        flusher = Flusher(url, metrics, writers=1)
        with structlog.testing.capture_logs() as logs:
            await flusher.ensure_ahead()  # what the daemon does at start
            await flusher.write(_batch(5))  # a commit that the standby confirmed
        await flusher.close()
        events = [e for e in logs if e["event"] == "database_replication"]
        assert [e["synchronous"] for e in events] == [True]
        assert events[0]["synchronous_standby_names"] == "*"
        # The ingest login may not see pg_stat_replication's sync_state: "unknown", not 0.
        assert events[0]["synchronous_standbys_connected"] is None
        assert _gauge(metrics) == 1
        owner = await asyncpg.connect(primary.url)
        try:
            assert (await replication(owner)).sync_connected == 1
        finally:
            await owner.close()

        # Asynchronous: logged once, and the gauge follows (a reconnect asks again).
        await _set_sync(primary, "")
        with structlog.testing.capture_logs() as logs:
            await flusher.ensure_ahead()
            await flusher.close()
            await flusher.ensure_ahead()  # reconnected: the same answer is not logged again
        await flusher.close()
        events = [e for e in logs if e["event"] == "database_replication"]
        assert [e["synchronous"] for e in events] == [False]
        assert _gauge(metrics) == 0
