"""fleetd's periodic summary on a running daemon: the lines add up to what it received, stored
and rejected (the interval shortened from a minute by the constructor argument)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import structlog

from fleet_harness import MosquittoServer
from fleet_harness.publish import Publisher, readings
from fleetd.service import Daemon
from fleetd.settings import load_settings

pytestmark = pytest.mark.integration


async def test_the_summary_lines_add_up_to_what_the_daemon_did(
    broker: MosquittoServer, ingest_url: str
) -> None:
    settings = load_settings(
        None,
        mqtt_url=broker.url(),
        database_url=ingest_url,
        client_id="fleetd-summary",
        flush_interval_ms=100,
    )
    daemon = Daemon(settings, summary_interval_s=0.3)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    messages = [*readings(4, 4, 3, start, timedelta(minutes=1)), ("meters/M/telemetry", b"{")]
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(daemon.run())
        await asyncio.wait_for(daemon.ready.wait(), 20)
        pub = Publisher(broker.url())
        await asyncio.to_thread(pub.publish, messages)
        pub.close()
        for _ in range(300):
            if daemon.counters.written >= 24 and daemon.counters.acked >= 25:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.7)  # a summary line after the last ack
        daemon.request_stop()
        await asyncio.wait_for(task, timeout=15)
    lines = [e for e in logs if e["event"] == "ingest_summary"]
    assert len(lines) >= 2, [e["event"] for e in logs]
    assert sum(e["received"] for e in lines) == 25
    assert sum(e["written"] for e in lines) == 24
    assert sum(e["rejected"] for e in lines) == 1
    assert lines[-1]["unacked"] == 0
    assert lines[-1]["oldest_unacked_s"] == 0
