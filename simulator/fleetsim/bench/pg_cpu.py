"""PostgreSQL's CPU, read from /proc: what a drain costs the database, per stored reading.

The cluster's CPU is the postmaster's own, the CPU of its children that have exited (the
postmaster reaps its backends, so the kernel adds their time to its cutime/cstime) and that of
its live children (backends, walwriter, checkpointer, autovacuum workers). Everything the
server did in a window counts, background work included: that is what a write costs.

The waiter that counts rows is itself a backend; its CPU is left out (a count(*) of the
history every 50 ms over a 3 s drain would add several µs per reading).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import asyncpg

from fleet_harness.rows import COUNT_SQL

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    # Fields after the command name (which may hold spaces): state is [0], ppid [1].
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _seconds(fields: list[str], *, children: bool = False) -> float:
    own = int(fields[11]) + int(fields[12])  # utime + stime
    reaped = int(fields[13]) + int(fields[14]) if children else 0  # cutime + cstime
    return (own + reaped) / _TICK


def postmaster_pid(data_dir: Path) -> int:
    """The server's process id, from the first line of postmaster.pid."""
    return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


def cluster_cpu_seconds(postmaster: int) -> float:
    """CPU seconds used so far by the server `postmaster` and every process it started."""
    total = _seconds(_stat(postmaster), children=True)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked: its time is in the postmaster's cutime now
        if int(fields[1]) == postmaster:
            total += _seconds(fields)
    return total


def backend_cpu_seconds(pid: int) -> float:
    """CPU seconds of one backend (or any process)."""
    return _seconds(_stat(pid))


async def wait_rows_and_cpu(
    url: str,
    expected: int,
    postmaster: int,
    since: float,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    timeout_s: float = 600,
    poll_s: float = 0.05,
) -> tuple[int, float]:
    """Poll the history until `expected` rows are there (as fleet_harness.rows.wait_for_rows);
    return (rows, the cluster's CPU seconds since `since` without this waiter's own)."""
    conn = await asyncpg.connect(url)
    try:
        me = await conn.fetchval("SELECT pg_backend_pid()")
        mine0 = backend_cpu_seconds(me)
        deadline = time.monotonic() + timeout_s
        while True:
            n: int = await conn.fetchval(COUNT_SQL)
            if n >= expected or time.monotonic() > deadline:
                break
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the writer exited with {proc.returncode} after {n:,} rows")
            await asyncio.sleep(poll_s)
        mine = backend_cpu_seconds(me) - mine0
        return n, cluster_cpu_seconds(postmaster) - since - mine
    finally:
        await conn.close()
