"""Hourly upkeep: partitions ahead, compaction, then retention. Failures are logged and
retried next hour."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import asyncpg
import structlog

from fleetd.ingest.flusher import Flusher
from fleetd.settings import Settings
from fleetdb.cold.layout import default_before
from fleetdb.connect import connect
from fleetdb.retention import drop_older_than, history_tables, rollup_parents

log = structlog.get_logger("fleetd")

MAINTENANCE_INTERVAL_S = 3600.0


async def maintain(settings: Settings, flusher: Flusher) -> None:
    """One round: partitions for today and the days ahead, then drop what retention allows."""
    try:
        await flusher.ensure_ahead()
        if settings.compact_after_days:
            await compact_days(settings)
        if settings.reject_retention_days:
            await _drop_old_rejects(settings)
        kinds = flusher.kinds  # the daemon's device kinds (fleetdb.kinds)
        keep = (
            (settings.retention_days, history_tables(kinds)),
            (settings.rollup_retention_days, rollup_parents(kinds)),
        )
        if not any(days for days, _ in keep):
            return
        # Its own connection: DETACH CONCURRENTLY waits for running flushes to finish and must
        # not hold a writer slot while it does.
        conn = await connect(settings.database_url, application_name="fleetd-retention")
        try:
            for days, parents in keep:
                if days:
                    dropped = await drop_older_than(conn, days, parents, kinds=kinds)
                    if dropped:
                        log.info("partitions_dropped", tables=dropped, retention_days=days)
        finally:
            await conn.close()
    except asyncpg.InsufficientPrivilegeError as exc:
        # The documented fleet_ingest login may create partitions but not drop them: only the
        # schema owner can. Say so instead of failing quietly every hour.
        log.error(  # noqa: TRY400 - one line with the reason and the fix, not a traceback
            "retention_not_permitted",
            error=str(exc),
            hint="dropping partitions needs the schema owner: run `fleetctl partitions "
            "drop-older-than DAYS` as the owner from a timer, or unset FLEET_RETENTION_DAYS",
        )
    except Exception as exc:
        log.warning("maintenance_failed", error=f"{exc.__class__.__name__}: {exc}")


async def compact_days(settings: Settings) -> None:
    """Compact closed days in a child process (fleetdb.cold.__main__); terminated with us."""
    before = default_before(settings.compact_after_days)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fleetdb.cold",
        "--before",
        before.isoformat(),
        env={**os.environ, "FLEET_DATABASE_URL": settings.database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        # Compaction resumes where it stopped: stopping it loses nothing.
        proc.terminate()
        await proc.wait()
        raise
    if proc.returncode == 0:
        done = json.loads(out)
        if done["days"] or done["lateMerged"]:
            log.info("days_compacted", **done)
    elif proc.returncode == 3:
        log.info("compaction_skipped", reason=err.decode().strip())
    else:
        log.error("compaction_failed", error=err.decode().strip()[-500:])


async def _drop_old_rejects(settings: Settings) -> None:
    days = settings.reject_retention_days
    conn = await connect(settings.database_url, application_name="fleetd-retention")
    try:
        dropped = await conn.fetchval(
            "SELECT fleet_drop_rejects_before(now() - make_interval(days => $1))", days
        )
    finally:
        await conn.close()
    if dropped:
        log.info("rejects_dropped", rows=dropped, retention_days=days)


async def maintenance_loop(settings: Settings, flusher: Flusher) -> None:
    """maintain() now and every hour, until cancelled."""
    while True:
        await maintain(settings, flusher)
        await asyncio.sleep(MAINTENANCE_INTERVAL_S)
