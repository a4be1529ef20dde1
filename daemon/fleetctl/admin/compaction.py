"""`fleetctl compact` and `fleetctl storage`: the cold tier from the command line."""

from __future__ import annotations

import sys
from datetime import date
from typing import Any, TextIO

import asyncpg

from fleetctl.errors import AnalyticsError
from fleetdb.cold import compact
from fleetdb.cold.layout import default_before, latest_allowed
from fleetdb.cold.storage import storage


def _progress_line(out: TextIO) -> compact.ProgressFn:
    def show(p: compact.Progress) -> None:
        out.write(f"\rcompacting {p.day}: {p.readings:,} readings, {p.rate:,.0f}/s   ")
        out.flush()

    return show


async def compact_command(
    conn: asyncpg.Connection, before: date | None, after_days: int, *, progress: bool
) -> dict[str, Any]:
    """Compact the days before `before` (default: FLEET_COMPACT_AFTER_DAYS ago; when that is 0,
    fleetd does not compact, and every day the tier takes is compacted) and merge late
    readings; a progress line goes to stderr when it is a terminal."""
    try:
        limit = before or (default_before(after_days) if after_days else latest_allowed())
        report = _progress_line(sys.stderr) if progress and sys.stderr.isatty() else None
        done = await compact.run(conn, limit, report)
    except (ValueError, compact.CompactionBusyError) as exc:
        raise AnalyticsError(str(exc)) from exc
    finally:
        if progress and sys.stderr.isatty():
            sys.stderr.write("\n")
    return {
        "before": limit.isoformat(),
        "days": [d.isoformat() for d in done.days_done],
        "readings": done.readings,
        "lateMerged": done.late_merged,
        "readingsPerSecond": round(done.rate),
    }


async def storage_command(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Per day and kind: readings, bytes, bytes per reading, state."""
    return [
        {
            "day": s.day.isoformat(),
            "kind": s.kind,
            "state": s.state,
            "readings": s.readings,
            "rawBytes": s.raw_bytes,
            "indexBytes": s.index_bytes,
            "rollupBytes": s.rollup_bytes,
            "bytesPerReading": _round(s.bytes_per_reading),
            "rollupBytesPerReading": _round(s.rollup_bytes_per_reading),
        }
        for s in await storage(conn)
    ]


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)
