"""Waiting for readings to land (demo and benchmarks)."""

from __future__ import annotations

import asyncio
import subprocess
import time

import asyncpg

COUNT_SQL = "SELECT (SELECT count(*) FROM meter_readings) + (SELECT count(*) FROM vehicle_readings)"


async def wait_for_rows(
    url: str,
    expected: int,
    timeout_s: float = 300,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    poll_s: float = 0.05,
) -> int:
    """Poll the history row count until it reaches `expected` or `timeout_s` passes; fail fast
    when `proc` (the daemon that should be writing them) has exited."""
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            n: int = await conn.fetchval(COUNT_SQL)
            if n >= expected or time.monotonic() > deadline:
                return n
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"fleetd exited with {proc.returncode} after {n:,} rows")
            await asyncio.sleep(poll_s)
    finally:
        await conn.close()
