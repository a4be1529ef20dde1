"""Opening connections with the session settings every fleet query relies on."""

from __future__ import annotations

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
)


async def connect(dsn: str, *, application_name: str = "fleetd") -> asyncpg.Connection:
    """Connect with UTC session time zone and bounded statement time."""
    return await asyncpg.connect(
        dsn,
        timeout=10,
        command_timeout=60,
        server_settings={"application_name": application_name, "timezone": "UTC"},
    )


# Analytics sessions: JIT compilation cost more than it saved on every report we measured (it
# tripled a 24 h fleet aggregate: compiling took longer than running), and the fleet-wide
# aggregates over ~800,000 rows need more than the default 4 MB of work_mem to stay in memory.
# DateStyle ISO (PostgreSQL's default) is what fleetctl's text timestamps are parsed as.
ANALYTICS_SETTINGS = {"jit": "off", "work_mem": "64MB", "DateStyle": "ISO"}


async def connect_analytics(dsn: str, *, application_name: str = "fleetctl") -> asyncpg.Connection:
    """A connection for report queries (UTC, no JIT, more work_mem)."""
    return await asyncpg.connect(
        dsn,
        timeout=10,
        command_timeout=300,
        server_settings={"application_name": application_name, "timezone": "UTC"}
        | ANALYTICS_SETTINGS,
    )


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 4, application_name: str = "fleet"
) -> asyncpg.Pool:
    """A pool of analytics sessions (the same settings as `connect_analytics`)."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=10,
        command_timeout=300,
        server_settings={"application_name": application_name, "timezone": "UTC"}
        | ANALYTICS_SETTINGS,
    )
    assert pool is not None
    return pool
