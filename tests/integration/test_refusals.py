"""What the database or broker refuses (issue 24): one line naming the cause and the fix, never
a traceback; fleetd stays up, says why in /healthz and resumes by itself once it is fixed; a
service that cannot work (its port taken, the wrong login for its job) exits with code 2,
which its systemd unit does not restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from fleet_harness import MosquittoServer, PostgresServer
from fleetd.ops.health import check
from fleetd.service import Daemon
from fleetd.settings import Settings
from fleetdb.connect import connect
from fleetdb.migrate import migrate
from tests.conftest import as_user, running

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
TRACEBACK = "Traceback (most recent call last)"


def _run(
    argv: list[str], env: dict[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "FLEET_LOG_FORMAT": "json", "HOME": "/tmp"}
    return subprocess.run(
        argv, env=base | env, capture_output=True, text=True, check=False, timeout=timeout_s
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error line of a command that failed: stderr is that one line (warnings aside)."""
    lines = [ln for ln in result.stderr.splitlines() if ": warning: " not in ln]
    assert TRACEBACK not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
async def empty_database(pg_admin_url: str) -> AsyncIterator[str]:
    """A database nothing was migrated in (the ingest and analytics roles exist cluster-wide,
    from the template's migrations)."""
    name = f"fleet_empty_{os.getpid()}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def password_login(
    pg_server: PostgresServer | None, pg_admin_url: str, database_url: str
) -> AsyncIterator[tuple[str, str]]:
    """(URL with the right password, with a wrong one) of a fleet_ingest login that must give
    its password (the harness trusts every other login on loopback)."""
    if pg_server is None:
        pytest.skip("needs the harness's own PostgreSQL (its pg_hba.conf is edited)")
    user = f"t_pw_{os.getpid()}"
    hba = pg_server.data_dir / "pg_hba.conf"
    original = hba.read_text()
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP ROLE IF EXISTS "{user}"')
        await admin.execute(f"CREATE ROLE \"{user}\" LOGIN PASSWORD 'right' IN ROLE fleet_ingest")
        # First line wins: only this user needs a password.
        hba.write_text(f"host all {user} 127.0.0.1/32 scram-sha-256\n{original}")
        await admin.execute("SELECT pg_reload_conf()")
        base = as_user(database_url, user)
        yield base.replace(f"{user}@", f"{user}:right@"), base.replace(f"{user}@", f"{user}:wrong@")
    finally:
        hba.write_text(original)
        await admin.execute("SELECT pg_reload_conf()")
        await admin.execute(f'DROP ROLE IF EXISTS "{user}"')
        await admin.close()


@contextlib.contextmanager
def _taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def _until(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


def _started(settings: Settings) -> contextlib.AbstractAsyncContextManager[Daemon]:
    """A daemon running in this loop, whether or not it gets ready; stopped at the end."""
    return running(settings, wait_ready=False)


# --- fleetd run: stays up, says why, resumes ------------------------------------------------


async def test_an_unmigrated_database_is_named_and_fleetd_resumes_once_migrated(
    empty_database: str, settings: Settings, logins: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fleetd.waiting.REFUSED_BACKOFF_FIRST_S", 1.0)
    # The ingest role exists cluster-wide; on an empty database it may not even read.
    ingest = as_user(empty_database, logins["ingest"])
    async with _started(settings.model_copy(update={"database_url": ingest})) as daemon:
        await _until(lambda: daemon.flusher.problem is not None, 20, "refusal not noticed")
        health = check(daemon)
        assert not health.ok
        reasons = " ".join(health.reasons)
        assert "run `fleetd migrate` as the schema owner" in reasons, reasons
        assert "broker not connected yet" in health.reasons  # not tried before the database
        assert health.details["waiting_for_operator"]
        # The operator migrates while fleetd runs: it resumes by itself, subscribed.
        conn = await connect(empty_database)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        await asyncio.wait_for(daemon.ready.wait(), timeout=30)
        assert daemon.flusher.problem is None
        assert check(daemon).details["waiting_for_operator"] == []


async def test_an_older_schema_is_named_before_the_first_flush(
    db: asyncpg.Connection, settings: Settings
) -> None:
    # A backup from before the latest migration: its row and grant gone.
    await db.execute("DELETE FROM schema_migrations WHERE version = '013'")
    await db.execute("REVOKE SELECT ON schema_migrations FROM fleet_ingest")
    async with _started(settings) as daemon:
        await _until(lambda: daemon.flusher.problem is not None, 20, "refusal not noticed")
        text = str(daemon.flusher.problem)
        assert "older than this fleetd" in text
        assert "run `fleetd migrate`" in text
        assert not daemon.ready.is_set()


async def test_a_wrong_database_password_is_named_with_its_fix(
    password_login: tuple[str, str], settings: Settings
) -> None:
    _right, wrong = password_login
    async with _started(settings.model_copy(update={"database_url": wrong})) as daemon:
        await _until(lambda: daemon.flusher.problem is not None, 20, "refusal not noticed")
        reasons = " ".join(check(daemon).reasons)
        assert "check the user and password in FLEET_DATABASE_URL" in reasons, reasons
        assert "wrong" not in reasons  # the password is never shown


async def test_a_login_in_no_fleet_role_is_told_to_join_fleet_ingest(
    db: asyncpg.Connection, database_url: str, settings: Settings
) -> None:
    user = f"t_norole_{os.getpid()}"
    await db.execute(f'CREATE ROLE "{user}" LOGIN')
    try:
        url = as_user(database_url, user)
        async with _started(settings.model_copy(update={"database_url": url})) as daemon:
            await _until(lambda: daemon.flusher.problem is not None, 20, "refusal not noticed")
            text = str(daemon.flusher.problem)
            assert "GRANT fleet_ingest TO" in text, text
    finally:
        await db.execute(f'DROP ROLE IF EXISTS "{user}"')


async def test_wrong_broker_credentials_are_named_with_their_fix(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fleetd.waiting.REFUSED_BACKOFF_FIRST_S", 0.5)
    with MosquittoServer(users={"fleetd": "right"}) as broker:
        url = broker.url("fleetd").replace(":right@", ":wrong@")
        async with _started(settings.model_copy(update={"mqtt_url": url})) as daemon:
            await _until(lambda: daemon.mqtt.refusal is not None, 20, "refusal not noticed")
            health = check(daemon)
            reasons = " ".join(health.reasons)
            assert "check the user and password in FLEET_MQTT_URL" in reasons, reasons
            assert reasons.startswith("broker refused: connection refused"), reasons
            assert health.details["waiting_for_operator"]
            assert "wrong" not in reasons


async def test_one_refusing_node_of_a_cluster_is_passed_over(
    settings: Settings, mqtt_url: str
) -> None:
    # A node whose auth backend is in a hiccup refuses; the next node of the list serves.
    with MosquittoServer(users={"fleetd": "right"}) as refusing:
        bad = refusing.url("fleetd").replace(":right@", ":wrong@")
        async with _started(
            settings.model_copy(update={"mqtt_url": f"{bad},{mqtt_url}"})
        ) as daemon:
            await asyncio.wait_for(daemon.ready.wait(), timeout=30)
            assert daemon.mqtt.refusal is None


# --- one line, never a traceback -------------------------------------------------------------


async def test_migrate_with_a_wrong_password_is_one_line(
    password_login: tuple[str, str],
) -> None:
    _right, wrong = password_login
    result = _run([str(BIN / "fleetd"), "migrate"], {"FLEET_DATABASE_URL": wrong})
    assert result.returncode == 4, result.stderr
    line = _one_line(result)
    assert "check the user and password in FLEET_DATABASE_URL" in line
    debug = _run([str(BIN / "fleetd"), "migrate", "--debug"], {"FLEET_DATABASE_URL": wrong})
    assert TRACEBACK in debug.stderr


async def test_migrate_as_a_non_owner_is_one_line(
    empty_database: str, logins: dict[str, str]
) -> None:
    url = as_user(empty_database, logins["analytics"])
    result = _run([str(BIN / "fleetd"), "migrate"], {"FLEET_DATABASE_URL": url})
    assert result.returncode == 4, result.stderr
    assert "run `fleetd migrate` as the schema owner" in _one_line(result)


async def test_a_report_on_an_unmigrated_database_is_one_line(empty_database: str) -> None:
    result = _run(
        [str(BIN / "fleetctl"), "fleet"], {"FLEET_ANALYTICS_DATABASE_URL": empty_database}
    )
    assert result.returncode == 1, result.stderr
    assert "fleetd migrate" in _one_line(result)


async def test_fleetd_run_with_its_ops_port_taken_exits_2_in_one_line(
    settings: Settings,
) -> None:
    with _taken_port() as port:
        result = _run(
            [str(BIN / "fleetd"), "run"],
            {
                "FLEET_DATABASE_URL": settings.database_url,
                "FLEET_MQTT_URL": str(settings.mqtt_url),
                "FLEET_HTTP_ADDR": f"127.0.0.1:{port}",
            },
        )
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("fleetd:")]
    assert TRACEBACK not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert "FLEET_HTTP_ADDR" in lines[0]


# --- services that cannot work refuse to start ----------------------------------------------


async def test_serve_with_its_port_taken_exits_2_in_one_line(analytics_url: str) -> None:
    with _taken_port() as port:
        result = _run(
            [str(BIN / "fleetctl"), "serve", "--addr", f"127.0.0.1:{port}"],
            {"FLEET_ANALYTICS_DATABASE_URL": analytics_url},
        )
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith(("fleetctl:", "Error:"))]
    assert TRACEBACK not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert "FLEET_API_ADDR" in lines[0]


async def test_alerts_run_without_the_admin_login_exits_naming_the_variable(
    analytics_url: str,
) -> None:
    result = _run(
        [str(BIN / "fleetctl"), "alerts", "run"], {"FLEET_ADMIN_DATABASE_URL": analytics_url}
    )
    assert result.returncode == 2, result.stderr
    line = _one_line(result)
    assert "FLEET_ADMIN_DATABASE_URL" in line
    assert "fleet_admin" in line


async def test_alerts_run_without_a_target_warns_at_start(admin_url: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "FLEET_LOG_FORMAT": "json", "HOME": "/tmp"}
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "fleetctl"),
        "alerts",
        "run",
        env=env | {"FLEET_ADMIN_DATABASE_URL": admin_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        seen = ""
        async with asyncio.timeout(30):
            while "alerts_not_delivered" not in seen:
                seen += (await proc.stdout.readline()).decode()
        assert "only stored" in seen
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=15)
