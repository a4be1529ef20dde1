"""fleetd's one-line summary (fleetd.summary): counts over each period, what waits now, on a
drift-corrected period; tested with a short interval instead of the minute."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from fleetd.ingest.intake import Counters
from fleetd.summary import Waiting, summary_loop


async def _lines(logs: list[dict[str, object]], n: int) -> None:
    """Wait until `n` summary lines were logged."""
    for _ in range(1000):
        if sum(e["event"] == "ingest_summary" for e in logs) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {n} summary lines in 10 s: {logs}")


async def test_each_line_counts_the_period_and_says_what_waits() -> None:
    counters = Counters()
    waiting = Waiting(unacked=7, oldest_unacked_s=1.234)
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(summary_loop(counters, lambda: waiting, interval_s=0.2))
        await asyncio.sleep(0)  # the loop takes its baseline
        counters.received, counters.written, counters.rejected = 10, 8, 1
        counters.duplicates, counters.acked = 1, 9
        await _lines(logs, 1)
        counters.received, counters.written = 15, 13
        await _lines(logs, 2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    lines = [e for e in logs if e["event"] == "ingest_summary"]
    assert len(lines) == 2, logs
    first, second = lines
    assert first["period_s"] >= 0.2
    expected_first = {"received": 10, "written": 8, "rejected": 1, "duplicates": 1, "acked": 9}
    assert {k: first[k] for k in expected_first} == expected_first
    assert (first["unacked"], first["oldest_unacked_s"]) == (7, 1.2)
    expected_second = {"received": 5, "written": 5, "rejected": 0, "duplicates": 0, "acked": 0}
    assert {k: second[k] for k in expected_second} == expected_second
    assert first["log_level"] == "info"


async def test_a_quiet_daemon_still_logs_its_line() -> None:
    """The line is the heartbeat: zeros say 'alive and idle', silence would not."""
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(
            summary_loop(Counters(), lambda: Waiting(0, 0.0), interval_s=0.05)
        )
        await _lines(logs, 1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    [line] = [e for e in logs if e["event"] == "ingest_summary"]
    assert line["received"] == 0
    assert line["unacked"] == 0
