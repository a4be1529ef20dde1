"""The two kill -9 scenarios, shared by their integration tests and the stress test: a stream of
readings, a fleetd killed with SIGKILL mid-stream and restarted (alone, or beside a second fleetd
in a shared subscription). Each returns what the check needs to say who lost what."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from fleet_harness.publish import PublishStats
from fleet_harness.rows import COUNT_SQL
from fleetd.settings import Settings
from tests.conftest import spawn_fleetd, total_readings, wait_for_count
from tests.evidence import FleetdProcess, Stream, counters, wait_ready

BOTH = COUNT_SQL  # history rows of both kinds


@dataclass
class Outcome:
    """What one scenario run leaves for the check: the publisher's answer from the broker,
    the daemons (or their counters read just before a kill), and their exit codes."""

    published: PublishStats
    daemons: Mapping[str, FleetdProcess | Mapping[str, object]]
    exit_codes: list[int | None]


async def _stop(procs: Sequence[FleetdProcess]) -> list[int | None]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 15)
    return [proc.returncode for proc in procs]


async def _kill_mid_stream(
    proc: FleetdProcess,
    mqtt_url: str,
    db: asyncpg.Connection,
    msgs: Sequence[tuple[str, bytes]],
    *,
    kill_at: int,
    chunk: int,
) -> tuple[Stream, Mapping[str, object], int]:
    """Start publishing `msgs` and SIGKILL `proc` once `kill_at` readings are stored: (the
    stream, still going, proc's counters read just before the kill, the readings stored then)."""
    stream = Stream(mqtt_url, msgs, chunk=chunk).start()
    await wait_for_count(db, BOTH, kill_at, check=stream.raise_if_failed)
    killed = await counters(proc)  # what it had done, as near the kill as we can read it
    proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(proc.wait)
    return stream, killed, await total_readings(db)


async def _drained(db: asyncpg.Connection, expected: int, timeout_s: float) -> None:
    await wait_for_count(db, BOTH, expected, timeout_s=timeout_s)
    await asyncio.sleep(1.0)  # any late redelivery would show up as an extra row


async def kill_9(
    settings: Settings,
    mqtt_url: str,
    db: asyncpg.Connection,
    msgs: Sequence[tuple[str, bytes]],
    logs: Path,
    *,
    kill_at: int,
    chunk: int = 500,
    drain_timeout_s: float = 90,
) -> Outcome:
    """One fleetd, killed once `kill_at` readings are stored while the stream goes on, then
    restarted with the same client id: its durable session brings back what it had not acked."""
    proc = spawn_fleetd(settings, log_path=logs / "fleetd.log")
    procs = [proc]
    try:
        # Subscribed first: the broker drops what arrives before any subscription exists.
        await wait_ready(proc)
        stream, killed, stored_at_kill = await _kill_mid_stream(
            proc, mqtt_url, db, msgs, kill_at=kill_at, chunk=chunk
        )
        assert 0 < stored_at_kill < len(msgs), stored_at_kill
        published = await stream.join()
        proc = spawn_fleetd(settings, log_path=logs / "fleetd-restarted.log")
        procs.append(proc)
        await _drained(db, len(msgs), drain_timeout_s)
    finally:
        exit_codes = await _stop(procs)
    return Outcome(published, {"killed": killed, "restarted": proc}, exit_codes[1:])


async def scale_out(
    settings: Settings,
    mqtt_url: str,
    db: asyncpg.Connection,
    msgs: Sequence[tuple[str, bytes]],
    logs: Path,
    *,
    kill_at: int,
    chunk: int = 400,
    drain_timeout_s: float = 90,
) -> Outcome:
    """Two fleetd in one MQTT 5 shared subscription; A is killed once `kill_at` readings are
    stored, B keeps storing, A comes back with the same client id after the stream ended."""
    a = settings.model_copy(update={"client_id": settings.client_id + "-a"})
    b = settings.model_copy(update={"client_id": settings.client_id + "-b"})
    shared = {"FLEET_SHARE_GROUP": "ingest", "FLEET_MQTT_PROTOCOL": "5"}
    proc_a = spawn_fleetd(a, log_path=logs / "fleetd-a.log", **shared)
    proc_b = spawn_fleetd(b, log_path=logs / "fleetd-b.log", **shared)
    procs = [proc_a, proc_b]
    try:
        await asyncio.gather(wait_ready(proc_a), wait_ready(proc_b))
        stream, killed_a, at_kill = await _kill_mid_stream(
            proc_a, mqtt_url, db, msgs, kill_at=kill_at, chunk=chunk
        )
        published = await stream.join()
        await asyncio.sleep(1.0)
        assert await total_readings(db) > at_kill  # B kept storing while A was down
        # Messages the broker had handed to A (or queued for its durable session) arrive when
        # it comes back with the same client id.
        proc_a = spawn_fleetd(a, log_path=logs / "fleetd-a2.log", **shared)
        procs.append(proc_a)
        await _drained(db, len(msgs), drain_timeout_s)
    finally:
        exit_codes = await _stop(procs)
    daemons = {"a (killed)": killed_a, "b": proc_b, "a (restarted)": proc_a}
    return Outcome(published, daemons, exit_codes[1:])
