"""`python -m fleetdb.cold --before YYYY-MM-DD`: one compaction run in a process of its own.

fleetd's hourly maintenance starts this instead of compacting in its own process: a day of
readings is minutes of CPU that would otherwise hold the event loop (and the GIL) that acks
messages. The database URL comes from FLEET_DATABASE_URL (never the command line, which `ps`
shows); one JSON line on stdout says what was done. Killed at any point, the next run resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import date

from fleetdb.cold import compact
from fleetdb.connect import connect


async def _run(url: str, before: date) -> dict[str, object]:
    conn = await connect(url, application_name="fleetd-compaction")
    try:
        done = await compact.run(conn, before)
    finally:
        await conn.close()
    return {
        "days": [d.isoformat() for d in done.days_done],
        "readings": done.readings,
        "readingsPerSecond": round(done.rate),
        "lateMerged": done.late_merged,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit 0 done, 1 failed (one line on stderr), 3 another run holds the lock."""
    parser = argparse.ArgumentParser(prog="python -m fleetdb.cold")
    parser.add_argument("--before", required=True, type=date.fromisoformat)
    args = parser.parse_args(argv)
    url = os.environ.get("FLEET_DATABASE_URL")
    if not url:
        print("FLEET_DATABASE_URL is not set", file=sys.stderr)
        return 1
    try:
        result = asyncio.run(_run(url, args.before))
    except compact.CompactionBusyError as exc:
        print(exc, file=sys.stderr)
        return 3
    except Exception as exc:
        print(f"{exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
