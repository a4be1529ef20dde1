"""Fixtures: real PostgreSQL and Mosquitto from the harness (or FLEET_TEST_* URLs).

One PostgreSQL server per session with a migrated template database; each test gets a fresh
copy of it (CREATE DATABASE ... TEMPLATE, ~0.1 s). Each test gets its own broker too, so no
persistent session or queue leaks from one test into another.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from fleet_harness import AedesServer, MosquittoServer, PostgresServer
from fleet_harness.cleanup import unwind_on_sigterm
from fleet_harness.containers import docker_requested, mosquitto_container, postgres_container
from fleet_harness.publish import Publisher
from fleet_harness.rows import COUNT_SQL
from fleetd.service import Daemon
from fleetd.settings import Settings, load_settings
from fleetdb.connect import connect
from fleetdb.fold import fold
from fleetdb.kinds import REGISTRY, DeviceKind
from fleetdb.migrate import migrate
from fleetdb.rollups import LEVELS
from tests.evidence import BROKER, FAILED, FleetdProcess, keep, spawn

_counter = itertools.count()


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer | None]:
    """The harness's own PostgreSQL (None when the tests use an external server)."""
    if os.environ.get("FLEET_TEST_DATABASE_URL") or docker_requested():
        yield None
        return
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def pg_admin_url(pg_server: PostgresServer | None) -> Iterator[str]:
    """URL of a database on a server we may create databases on."""
    external = os.environ.get("FLEET_TEST_DATABASE_URL")
    if external:
        yield external
        return
    if pg_server is None:
        with postgres_container() as url:
            yield url
        return
    yield pg_server.url


@pytest.fixture(scope="session")
async def template_db(pg_admin_url: str) -> str:
    """Name of a database with every migration applied, to clone per test."""
    name = f"fleet_tpl_{os.getpid()}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await connect(_with_db(pg_admin_url, name))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return name


# The logins sql/006_roles.sql tells ops to create, one per job; tests of production behaviour
# connect as these, never as the schema owner (who only migrates).
LOGINS = {"ingest": "fleet_ingest", "analytics": "fleet_analytics", "admin": "fleet_admin"}


def as_user(url: str, user: str) -> str:
    """`url` with another user name (the harness trusts loopback: no password)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}@{host}{port}"))


@pytest.fixture(scope="session")
async def logins(pg_admin_url: str, template_db: str) -> AsyncIterator[dict[str, str]]:
    """Login names by job ("ingest", "analytics", "admin"), each IN ROLE its group, created the
    way the README's roles recipe says; dropped at the end (roles are cluster-wide)."""
    names = {job: f"t_{job}_{os.getpid()}" for job in LOGINS}
    admin = await asyncpg.connect(pg_admin_url)
    try:
        for job, user in names.items():
            await admin.execute(f'DROP ROLE IF EXISTS "{user}"')
            await admin.execute(f'CREATE ROLE "{user}" LOGIN IN ROLE {LOGINS[job]}')
    finally:
        await admin.close()
    yield names
    admin = await asyncpg.connect(pg_admin_url)
    try:
        for user in names.values():
            await admin.execute(f'DROP ROLE IF EXISTS "{user}"')
    finally:
        await admin.close()


@pytest.fixture
def ingest_url(database_url: str, logins: dict[str, str]) -> str:
    """This test's database as fleetd connects to it in production: a fleet_ingest login."""
    return as_user(database_url, logins["ingest"])


@pytest.fixture
def analytics_url(database_url: str, logins: dict[str, str]) -> str:
    """This test's database as reports read it: a fleet_analytics login."""
    return as_user(database_url, logins["analytics"])


@pytest.fixture
def admin_url(database_url: str, logins: dict[str, str]) -> str:
    """This test's database as assignments are written: a fleet_admin login."""
    return as_user(database_url, logins["admin"])


@contextlib.asynccontextmanager
async def fresh_database(pg_admin_url: str, template_db: str, name: str) -> AsyncIterator[str]:
    """A database cloned from the migrated template, dropped afterwards."""
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await admin.close()
    try:
        yield _with_db(pg_admin_url, name)
    finally:
        admin = await asyncpg.connect(pg_admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def database_url(pg_admin_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"fleet_t{os.getpid()}_{next(_counter)}"
    async with fresh_database(pg_admin_url, template_db, name) as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test's database."""
    conn = await connect(database_url, application_name="tests")
    yield conn
    await conn.close()


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> Iterator[MosquittoServer]:
    """A private Mosquitto with the repo's mosquitto.conf settings (anonymous, loopback). Its
    log is kept in .test-artifacts/<test>/ when the test fails; a test marked
    `mosquitto_debug_log` gets every packet logged (`log_type all`)."""
    debug = request.node.get_closest_marker("mosquitto_debug_log") is not None
    with MosquittoServer(extra_conf="log_type all" if debug else "") as server:
        yield server
        keep(request.node, server.log_path)


@pytest.fixture
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A directory for this test's evidence (fleetd logs); copied to .test-artifacts/<test>/
    when the test fails."""
    path = tmp_path / "artifacts"
    path.mkdir()
    yield path
    keep(request.node, *path.iterdir())


BROKERS = pytest.mark.parametrize("mqtt_url", ["mosquitto", "aedes"], indirect=True)
"""Run a test against each broker implementation: Mosquitto, and aedes (3.1.1 only, no window)."""


@pytest.fixture
def mqtt_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """This test's broker: FLEET_TEST_MQTT_URL, a container (opt-in), or a private Mosquitto;
    a private aedes when the test is parametrized with BROKERS."""
    external = os.environ.get("FLEET_TEST_MQTT_URL")
    if getattr(request, "param", "mosquitto") == "aedes":
        with AedesServer() as aedes:
            yield aedes.url()
    elif external:
        yield external
    elif docker_requested():
        with mosquitto_container() as url:
            yield url
    else:
        server: MosquittoServer = request.getfixturevalue("broker")
        request.node.stash[BROKER] = server
        yield server.url()


@pytest.fixture
def settings(mqtt_url: str, ingest_url: str) -> Settings:
    """Daemon settings for this test's broker and database (fast flushes), connecting as a
    fleet_ingest login like a deployed fleetd."""
    return load_settings(
        None,
        mqtt_url=mqtt_url,
        database_url=ingest_url,
        client_id=f"fleetd-test-{os.getpid()}-{next(_counter)}",
        flush_interval_ms=200,
        # Tests date their readings days back and read the raw tables: compaction only where
        # a test asks for it (test_cold).
        compact_after_days=0,
    )


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, wait_ready: bool = True, kinds: tuple[DeviceKind, ...] = REGISTRY
) -> AsyncIterator[Daemon]:
    """Run a Daemon in this event loop until the block exits (graceful stop). The block starts
    once it is ready (TimeoutError after 20 s), or at once without `wait_ready` (a daemon
    that waits for what refuses it). `kinds`: the device kinds it takes."""
    daemon = Daemon(settings, kinds=kinds)
    task = asyncio.create_task(daemon.run(), name="daemon")
    if wait_ready:
        await _ready(daemon, task)
    try:
        yield daemon
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, timeout=15)


async def publish_all(url: str, msgs: Sequence[tuple[str, bytes]], client_id: str = "") -> None:
    """Publish `msgs` at QoS 1 from a thread; returns once the broker acked every one (the
    harness's Publisher raises PublishError otherwise)."""
    pub = Publisher(url, client_id)
    try:
        await asyncio.to_thread(pub.publish, msgs)
    finally:
        pub.close()


async def _ready(daemon: Daemon, task: asyncio.Task[None]) -> None:
    ready = asyncio.create_task(daemon.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    if ready not in done:
        ready.cancel()
        task.cancel()
        raise TimeoutError("daemon not ready in 20 s")


async def wait_for_count(
    conn: asyncpg.Connection,
    sql: str,
    expected: int,
    timeout_s: float = 60,
    *,
    check: Callable[[], None] | None = None,
) -> int:
    """Poll `sql` (a count) until it reaches `expected` or the timeout passes; `check` is
    called on every poll and may raise to stop waiting (a publisher that already failed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        if check is not None:
            check()
        value: int = await conn.fetchval(sql)
        if value >= expected or loop.time() > deadline:
            return value
        await asyncio.sleep(0.1)


def spawn_fleetd(
    settings: Settings, *, log_path: Path | None = None, **extra_env: str
) -> FleetdProcess:
    """Start `fleetd run` as a real process configured like `settings`, JSON logs to `log_path`
    (a temp file by default). Wait for `evidence.wait_ready()` before publishing to it."""
    if log_path is None:
        with tempfile.NamedTemporaryFile(prefix="fleetd-", suffix=".log", delete=False) as log:
            log_path = Path(log.name)
    return spawn(settings, log_path, **extra_env)


async def total_readings(conn: asyncpg.Connection) -> int:
    """History rows of both kinds."""
    n: int = await conn.fetchval(COUNT_SQL)
    return n


async def fold_all(conn: asyncpg.Connection) -> None:
    """Fold every level up to a day ahead (fleetdb.fold): every bucket stored so far is then
    complete in the rollups (readings of folded buckets are added at ingest from then on)."""
    ahead = datetime.now(UTC) + timedelta(days=1)
    while (await fold(conn, ahead, timedelta(0))).spans:
        pass


async def assert_rollups_match_raw(conn: asyncpg.Connection) -> None:
    """Every rollup row of every level equals the aggregate of its raw rows (none missing),
    once the buckets not folded yet are folded: ingest feeds the folded buckets, the fold the
    others, each reading exactly once."""
    await fold_all(conn)
    for level in LEVELS:
        mismatch = await conn.fetchval(
            f"""SELECT count(*) FROM (
                 SELECT meter_id, {level.bucket("ts")} AS {level.column},
                        sum(kwh_consumed_ac) AS k, count(*) AS n FROM meter_readings GROUP BY 1, 2
               ) raw FULL JOIN {level.table("meter")} h USING (meter_id, {level.column})
               WHERE raw.k IS DISTINCT FROM h.kwh_sum OR raw.n IS DISTINCT FROM h.readings"""
        )
        assert mismatch == 0, level.name
        mismatch = await conn.fetchval(
            f"""SELECT count(*) FROM (
                 SELECT vehicle_id, {level.bucket("ts")} AS {level.column},
                        sum(kwh_delivered_dc) AS k, count(*) AS n,
                        min(battery_temp) AS tmin, max(battery_temp) AS tmax,
                        min(ts) AS first_ts, max(ts) AS last_ts,
                        (array_agg(soc ORDER BY ts))[1] AS sf,
                        (array_agg(soc ORDER BY ts DESC))[1] AS sl
                 FROM vehicle_readings GROUP BY 1, 2
               ) raw FULL JOIN {level.table("vehicle")} h USING (vehicle_id, {level.column})
               WHERE raw.k IS DISTINCT FROM h.kwh_sum OR raw.n IS DISTINCT FROM h.readings
                  OR raw.tmin IS DISTINCT FROM h.temp_min OR raw.tmax IS DISTINCT FROM h.temp_max
                  OR raw.first_ts IS DISTINCT FROM h.soc_first_ts
                  OR raw.last_ts IS DISTINCT FROM h.soc_last_ts
                  OR raw.sf IS DISTINCT FROM h.soc_first OR raw.sl IS DISTINCT FROM h.soc_last"""
        )
        assert mismatch == 0, level.name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:  # pragma: no cover - pytest plumbing
    """Remember a failed setup or call on the item, so fixtures keep evidence at teardown."""
    report = yield
    if call.when in ("setup", "call") and report.failed:
        item.stash[FAILED] = True
    return report


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM (CI timeout, `timeout`) tears fixtures down, so no server outlives the run."""
    unwind_on_sigterm()
