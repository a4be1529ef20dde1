"""fleetd's heartbeat in the log: one line every `interval_s` (a minute by default) saying what
came in and what was stored since the last one, and what still waits for its commit. Without it
a healthy daemon logs nothing after `broker_connected`, which looks the same as a stuck one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import astuple, dataclass

import structlog

from fleetd.ingest.intake import Counters

log = structlog.get_logger("fleetd")

SUMMARY_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class _Totals:
    received: int
    written: int
    rejected: int
    duplicates: int
    acked: int

    @classmethod
    def of(cls, c: Counters) -> _Totals:
        return cls(c.received, c.written, c.rejected, c.duplicates, c.acked)


@dataclass(frozen=True, slots=True)
class Waiting:
    """What is unacknowledged right now: messages buffered or in a running transaction, and
    the age of the oldest of them."""

    unacked: int
    oldest_unacked_s: float


def log_summary(period_s: float, before: _Totals, now: _Totals, waiting: Waiting) -> None:
    """One `ingest_summary` line: counts over the period, what waits now."""
    delta = dict(
        zip(
            ("received", "written", "rejected", "duplicates", "acked"),
            (b - a for a, b in zip(astuple(before), astuple(now), strict=True)),
            strict=True,
        )
    )
    log.info(
        "ingest_summary",
        period_s=round(period_s, 1),
        **delta,
        unacked=waiting.unacked,
        oldest_unacked_s=round(waiting.oldest_unacked_s, 1),
    )


async def summary_loop(
    counters: Counters, waiting: Callable[[], Waiting], *, interval_s: float = SUMMARY_INTERVAL_S
) -> None:
    """Log a summary every `interval_s` until cancelled; the period is drift-corrected (each
    line is due at start + k x interval, however long the loop was busy)."""
    loop = asyncio.get_running_loop()
    started = last = loop.time()
    before = _Totals.of(counters)
    k = 0
    while True:
        k += 1
        await asyncio.sleep(max(0.0, started + k * interval_s - loop.time()))
        now, totals = loop.time(), _Totals.of(counters)
        log_summary(now - last, before, totals, waiting())
        last, before = now, totals
