"""Reports on a streaming hot standby of the harness's primary, as deployed when dashboards read
a replica: the same answers as the primary's once replay has caught up, `fleetctl serve` on it,
and the fleet report's two-connection snapshot working there."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from fleet_harness import PostgresServer
from fleetctl.analytics import anomalies, current, fleet_report, vehicle_performance
from fleetdb.connect import connect_analytics, create_pool
from tests.integration.test_analytics import W3H, depot
from tests.integration.test_ops_http import TOKEN, fleetctl_serve, get_json

pytestmark = pytest.mark.integration

CLOCK = ("generatedAt", "dataAgeSeconds")  # what depends on when a report is asked


@pytest.fixture(scope="module")
def standby(pg_server: PostgresServer | None) -> Iterator[PostgresServer]:
    if pg_server is None:
        pytest.skip("a standby needs the harness's own primary (FLEET_TEST_DATABASE_URL is set)")
    with PostgresServer(standby_of=pg_server) as server:
        yield server


def _on(server: PostgresServer, url: str) -> str:
    """`url` (a database and login on the primary) pointed at `server`."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username}@127.0.0.1:{server.port}").geturl()


def _timeless(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in CLOCK}


@pytest.fixture
async def replica_url(
    db: asyncpg.Connection, pg_server: PostgresServer, standby: PostgresServer, analytics_url: str
) -> str:
    """The depot's data written on the primary and replayed on the standby; the analytics
    login's URL there."""
    await depot(db)
    await standby.wait_for_replay(pg_server)
    return _on(standby, analytics_url)


async def test_every_report_on_the_replica_equals_the_primary(
    replica_url: str, analytics_url: str
) -> None:
    primary = await connect_analytics(analytics_url)
    replica = await connect_analytics(replica_url)
    pool = await create_pool(replica_url, min_size=2, max_size=2)
    try:
        assert await replica.fetchval("SELECT pg_is_in_recovery()")
        for name, call in (
            ("vehicle", lambda d: vehicle_performance(d, "V1", W3H)),
            ("fleet", lambda d: fleet_report(d, W3H)),
            ("anomalies", lambda d: anomalies(d, W3H, threshold=0.8)),
        ):
            want = _timeless(await call(primary))
            assert _timeless(await call(replica)) == want, name
            # A pool: the report's second connection imports the first's snapshot there too.
            assert _timeless(await call(pool)) == want, name
        now = (await current(primary, "all"))["asOf"]
        assert await current(replica, "all", now=_parse(now)) == await current(
            primary, "all", now=_parse(now)
        )
    finally:
        await pool.close()
        await primary.close()
        await replica.close()


async def test_fleetctl_serve_on_the_replica(replica_url: str, analytics_url: str) -> None:
    window = "start=2026-11-20T08:00:00Z&end=2026-11-20T11:00:00Z"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = []
    for url in (analytics_url, replica_url):
        with fleetctl_serve(url, FLEET_API_TOKEN=TOKEN) as port:
            status, body = await get_json(port, f"/v1/analytics/fleet?{window}", headers=auth)
            assert status == 200
            answers.append(_timeless(body))
    assert answers[0] == answers[1]
    assert answers[0]["totals"]["vehicles"] == 9


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
