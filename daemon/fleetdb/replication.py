"""Whether the server fleetd writes to waits for a synchronous standby before a commit returns.

"Nothing lost" holds across a failover only then: with asynchronous replication, what the old
primary committed (and fleetd acked) but had not shipped yet is gone once a standby is promoted.
Readable by the least-privileged ingest login: both settings are visible to every role, and
pg_stat_replication shows its rows to everyone but hides their sync_state from roles without
pg_read_all_stats (then the number of connected synchronous standbys is unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

REPLICATION_SQL = """
SELECT coalesce(host(inet_server_addr()) || ':' || inet_server_port(), 'local socket') AS server,
       current_setting('synchronous_standby_names') AS standby_names,
       current_setting('synchronous_commit') AS synchronous_commit,
       (SELECT count(*) FILTER (WHERE sync_state IN ('sync', 'quorum')) FROM pg_stat_replication)
           AS sync_connected,
       (SELECT count(*) > count(sync_state) FROM pg_stat_replication) AS hidden
"""

# synchronous_commit levels at which a commit waits for the synchronous standbys.
_WAITING = frozenset({"on", "remote_write", "remote_apply"})


@dataclass(frozen=True)
class Replication:
    """What one server said about its synchronous replication."""

    server: str  # address:port of the server as it sees itself
    standby_names: str  # synchronous_standby_names
    synchronous_commit: str  # of this session
    sync_connected: int | None  # synchronous standbys streaming now; None when hidden from us

    @property
    def synchronous(self) -> bool:
        """A commit returns only once a synchronous standby has it (as configured)."""
        return bool(self.standby_names.strip()) and self.synchronous_commit in _WAITING


async def replication(conn: asyncpg.Connection) -> Replication:
    """Ask the server `conn` is connected to about its synchronous replication."""
    row = await conn.fetchrow(REPLICATION_SQL)
    assert row is not None
    return Replication(
        server=row["server"],
        standby_names=row["standby_names"],
        synchronous_commit=row["synchronous_commit"],
        sync_connected=None if row["hidden"] else row["sync_connected"],
    )
