"""Batcher: batches by size, age or a quiet pipe, oldest first, and forgets old-connection
messages."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from fleetd.ingest.batcher import Batcher, Envelope
from fleetdb.ingest.messages import MeterReading

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def env(i: int, generation: int = 1, mono: float | None = None) -> Envelope:
    reading = MeterReading(f"M{i}", NOW, 1.0, 230.0)
    return Envelope(reading, NOW, time.monotonic() if mono is None else mono, i, 1, generation)


class TestBatcher:
    """Size- and age-triggered batches."""

    async def test_full_batch_is_ready_at_once(self) -> None:
        b = Batcher(batch_max_rows=3, flush_interval_s=60)
        for i in range(7):
            b.add(env(i))
        await asyncio.wait_for(b.wait_ready(), 1)
        assert [e.mid for e in b.take().envelopes] == [0, 1, 2]
        assert len(b) == 4

    async def test_partial_batch_waits_for_the_interval(self) -> None:
        b = Batcher(batch_max_rows=100, flush_interval_s=0.2)
        b.add(env(1))
        started = time.monotonic()
        await asyncio.wait_for(b.wait_ready(), 2)
        assert time.monotonic() - started >= 0.15
        assert len(b.take()) == 1

    async def test_old_message_makes_batch_ready_immediately(self) -> None:
        b = Batcher(batch_max_rows=100, flush_interval_s=1)
        b.add(env(1, mono=time.monotonic() - 5))
        await asyncio.wait_for(b.wait_ready(), 0.5)

    async def test_a_quiet_pipe_makes_a_partial_batch_ready_long_before_the_interval(
        self,
    ) -> None:
        b = Batcher(batch_max_rows=100, flush_interval_s=60, idle_s=0.02)
        b.add(env(1))
        await asyncio.wait_for(b.wait_ready(), 1)  # the interval alone would take a minute
        assert len(b.take()) == 1

    async def test_messages_still_arriving_hold_the_idle_rule_off(self) -> None:
        b = Batcher(batch_max_rows=100, flush_interval_s=60, idle_s=0.05)
        b.add(env(0))
        waiter = asyncio.create_task(b.wait_ready())
        for i in range(1, 6):  # one every 20 ms: never quiet for 50 ms
            await asyncio.sleep(0.02)
            b.add(env(i))
            assert not waiter.done()
        await asyncio.wait_for(waiter, 1)
        assert len(b.take()) == 6

    async def test_idle_zero_turns_the_rule_off(self) -> None:
        b = Batcher(batch_max_rows=100, flush_interval_s=60, idle_s=0)
        b.add(env(1, mono=time.monotonic() - 1))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.wait_ready(), 0.1)

    async def test_wake_interrupts_the_wait(self) -> None:
        b = Batcher(batch_max_rows=100, flush_interval_s=60)
        waiter = asyncio.create_task(b.wait_ready())
        await asyncio.sleep(0.01)
        b.wake()
        await asyncio.wait_for(waiter, 1)

    def test_drop_generation_keeps_current_connection(self) -> None:
        b = Batcher(batch_max_rows=100, flush_interval_s=1)
        for i in range(4):
            b.add(env(i, generation=1 + i % 2))
        assert b.drop_generation_before(2) == 2
        assert [e.mid for e in b.take().envelopes] == [1, 3]
