"""Opening connections with the session settings every fleet query relies on."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import asyncpg

# Errors that mean "the database is not reachable right now": retry with backoff.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash recovery
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout: a stuck statement is retried
    # Every host of a multi-host URL answered, none writable (target_session_attrs=read-write):
    # a failover in progress, the standby not promoted yet.
    asyncpg.exceptions.TargetServerAttributeNotMatched,
)


async def connect(dsn: str, *, application_name: str = "fleetd") -> asyncpg.Connection:
    """Connect with UTC session time zone, bounded statement time, and the writer's TCP
    keepalive and TCP_USER_TIMEOUT (see set_tcp_timeouts)."""
    conn = await asyncpg.connect(
        dsn,
        timeout=10,
        command_timeout=60,
        server_settings={"application_name": application_name, "timezone": "UTC"},
    )
    # On a silently dead link, command_timeout's cancel request opens a connection of its own
    # to the dead host and waits on it: maintenance, migrate and compaction would hang instead
    # of failing and retrying next round. The socket options fail the link itself within 12 s.
    set_tcp_timeouts(conn)
    return conn


# Analytics sessions: JIT compilation cost more than it saved on every report we measured (it
# tripled a 24 h fleet aggregate: compiling took longer than running), and the fleet-wide
# aggregates over ~800,000 rows need more than the default 4 MB of work_mem to stay in memory.
# DateStyle ISO (PostgreSQL's default) is what fleetctl's text timestamps are parsed as.
ANALYTICS_SETTINGS = {"jit": "off", "work_mem": "64MB", "DateStyle": "ISO"}


def _analytics_session(application_name: str) -> dict[str, Any]:
    """asyncpg's arguments of an analytics session, a connection's or a pool's."""
    return {
        "timeout": 10,
        "command_timeout": 300,
        "server_settings": {"application_name": application_name, "timezone": "UTC"}
        | ANALYTICS_SETTINGS,
    }


async def connect_analytics(dsn: str, *, application_name: str = "fleetctl") -> asyncpg.Connection:
    """A connection for report queries (UTC, no JIT, more work_mem)."""
    return await asyncpg.connect(dsn, **_analytics_session(application_name))


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 4, application_name: str = "fleet"
) -> asyncpg.Pool:
    """A pool of analytics sessions (the same settings as `connect_analytics`)."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, **_analytics_session(application_name)
    )
    assert pool is not None
    return pool


T = TypeVar("T")

# --- writer connections (fleetd's ingest) ---------------------------------------------------

# A writer must notice a silently dead link by itself (no RST, no FIN: a dead switch, a
# partitioned network), within 20 s: TCP keepalive probes an idle connection after 5 s, every
# 2 s, and TCP_USER_TIMEOUT closes the socket once sent data or probes stay unanswered for 12 s,
# whichever state the connection was in.
KEEPALIVE_IDLE_S = 5
KEEPALIVE_INTERVAL_S = 2
KEEPALIVE_COUNT = 3
USER_TIMEOUT_MS = 12_000
# Per host. asyncpg's `timeout` covers every host of a multi-host URL at once: a silent first
# host would use all of it and the second would never be tried. 5 s also keeps the gap
# between SYNs (0, 1, 3 s, then the next attempt) at 2 s, so a returning link is used at once.
CONNECT_TIMEOUT_S = 5.0


class WriteTimeoutError(TimeoutError):
    """A write got no answer in time; its connection was terminated (no cancel request)."""


async def terminate_if_late(
    conn: asyncpg.Connection, work: Coroutine[Any, Any, T], timeout_s: float
) -> T:
    """Await `work` (queries on `conn`); past `timeout_s`, terminate `conn` and raise
    WriteTimeoutError. Terminating ends `work` at once with a connection error; asyncpg's own
    timeout would send a cancel request over a new connection to a host that may be dead, and
    its rollback would wait for that request (a writer hung 16 s past the return of a link
    cut for 90 s)."""
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        conn.terminate()

    timer = asyncio.get_running_loop().call_later(timeout_s, expire)
    try:
        return await work
    except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError) as exc:
        if fired:
            raise WriteTimeoutError(
                f"no answer within {timeout_s:g} s; connection terminated"
            ) from exc
        raise
    finally:
        timer.cancel()


def set_tcp_timeouts(conn: asyncpg.Connection) -> bool:
    """Keepalive and TCP_USER_TIMEOUT on `conn`'s socket; False where there is no TCP socket to
    set them on (Unix socket, or an asyncpg that no longer exposes its transport)."""
    # asyncpg has no option for client keepalives (MagicStack/asyncpg#606, open): set them on
    # the socket of the connection's transport.
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        if hasattr(socket, name):  # Linux has all four; other systems some
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    return True


def writer_session(write_timeout_s: float, application_name: str) -> dict[str, str]:
    """Session settings of a writer connection: the server bounds a statement and a transaction
    left idle by a client that vanished, and probes the client's socket itself."""
    ms = str(round(write_timeout_s * 1000))
    return {
        "application_name": application_name,
        "timezone": "UTC",
        "statement_timeout": ms,
        "idle_in_transaction_session_timeout": ms,
        "tcp_keepalives_idle": str(KEEPALIVE_IDLE_S),
        "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL_S),
        "tcp_keepalives_count": str(KEEPALIVE_COUNT),
        "tcp_user_timeout": str(USER_TIMEOUT_MS),
    }


def url_hosts(dsn: str) -> list[tuple[str, int | None]]:
    """The hosts of a multi-host URL (`postgresql://u@h1:5432,h2:5433/db`), in order; [] when
    the URL names one host or none (asyncpg then reads it whole)."""
    netloc = urlsplit(dsn).netloc.rpartition("@")[2]
    if "," not in netloc:
        return []
    hosts: list[tuple[str, int | None]] = []
    for item in netloc.split(","):
        if item.startswith("["):  # [::1]:5432
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        hosts.append((unquote(host), int(port) if port else None))
    return hosts


async def connect_writer(
    dsn: str, *, write_timeout_s: float, application_name: str = "fleetd"
) -> asyncpg.Connection:
    """A connection for ingest writes: tried host by host (each with CONNECT_TIMEOUT_S), TCP
    keepalive and TCP_USER_TIMEOUT set, no asyncpg command_timeout (its cancel request opens
    a new connection to a host that may be dead: the caller terminates a write that is late).

    Raises a TRANSIENT_ERRORS error: TargetServerAttributeNotMatched saying what each host
    said when one of several answered read-only, else the last host's (TimeoutError naming a
    silent host).
    """
    hosts: list[tuple[str | None, int | None]] = [*url_hosts(dsn)] or [(None, None)]
    session = writer_session(write_timeout_s, application_name)
    error: BaseException | None = None
    tried: list[str] = []  # what each host of a multi-host URL said, for the error
    read_only = False
    for host, port in hosts:
        where = f"{host}:{port}" if port else str(host)
        try:
            conn = await asyncpg.connect(
                dsn,
                host=host,
                port=port,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=None,
                server_settings=session,
            )
        except TimeoutError as exc:
            said = f"did not answer within {CONNECT_TIMEOUT_S:g} s"
            error = TimeoutError(f"{where} {said}" if host else f"the database {said}")
            error.__cause__ = exc
            tried.append(f"{where} {said}")
        except TRANSIENT_ERRORS as exc:
            error = exc
            if isinstance(exc, asyncpg.exceptions.TargetServerAttributeNotMatched):
                read_only = True
                tried.append(f"{where} is read-only")
            else:
                tried.append(f"{where}: {exc.__class__.__name__}: {exc}")
        else:
            set_tcp_timeouts(conn)
            return conn
    assert error is not None
    if read_only and len(hosts) > 1:
        # A standby answered: a failover in progress, or a URL without the primary.
        raise asyncpg.exceptions.TargetServerAttributeNotMatched(
            "no writable host: " + "; ".join(tried)
        ) from error
    raise error
