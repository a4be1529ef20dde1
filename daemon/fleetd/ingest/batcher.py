"""Buffer of decoded-but-unwritten messages, cut into batches by size or age."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from fleetdb.ingest.messages import Decoded

if TYPE_CHECKING:
    from fleetd.ingest.tickets import Ticket


@dataclass(slots=True)
class Envelope:
    """A decoded message plus what is needed to store it and to ack it afterwards.

    A message holding a JSON array is one envelope per element, in order; only the last one
    carries the ack (`last`), so the message is acked once the batch holding its last element
    committed, and batches are acked in the order they were cut (fleetd.ingest.acks): by then
    every earlier element has committed too, however the elements were split across batches.

    An item of an HTTP request has no message to ack (`last` False) and a `ticket` instead,
    settled at `index` once its batch committed (fleetd.ingest.tickets)."""

    item: Decoded
    received_at: datetime
    received_mono: float
    mid: int
    qos: int
    generation: int
    last: bool = True
    ticket: Ticket | None = None
    index: int = 0


@dataclass(slots=True)
class Batch:
    """Messages written in one transaction; acked together after it commits."""

    envelopes: list[Envelope] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.envelopes)


class Batcher:
    """FIFO of envelopes. A batch is ready when `batch_max_rows` are buffered, when the oldest
    buffered message has waited `flush_interval_s` (which bounds a reading's wait for its
    transaction), or when nothing has arrived for `idle_s` (0 = never).

    The idle rule is what keeps a small broker window from starving us: a broker lets only so
    many messages stay unacknowledged toward a subscriber (RabbitMQ 10, Mosquitto 20, ejabberd 1
    by default) and then goes quiet until we ack. Waiting for the flush interval would cap the
    rate at window / interval; cutting the batch when the pipe goes quiet caps it at window /
    (idle gap + commit)."""

    def __init__(self, *, batch_max_rows: int, flush_interval_s: float, idle_s: float = 0) -> None:
        self.batch_max_rows = batch_max_rows
        self.flush_interval_s = flush_interval_s
        self.idle_s = idle_s
        self._items: deque[Envelope] = deque()
        self._wakeup = asyncio.Event()
        self._woken = False

    def __len__(self) -> int:
        return len(self._items)

    def add(self, envelope: Envelope) -> None:
        """Append one message; wakes the flusher when a full batch is available."""
        self._items.append(envelope)
        if len(self._items) == 1 or len(self._items) >= self.batch_max_rows:
            self._wakeup.set()

    def oldest_age_s(self, now: float | None = None) -> float:
        """Seconds the oldest buffered message has waited (0 when empty)."""
        if not self._items:
            return 0.0
        return (now or time.monotonic()) - self._items[0].received_mono

    def take(self) -> Batch:
        """Remove and return up to `batch_max_rows` messages, oldest first."""
        n = min(len(self._items), self.batch_max_rows)
        return Batch([self._items.popleft() for _ in range(n)])

    def drop_generation_before(self, generation: int) -> int:
        """Forget unwritten messages from connections older than `generation`.

        They can no longer be acked, so the broker redelivers them on the new connection;
        writing the old copies too would only duplicate work. Returns how many were dropped.
        """
        before = len(self._items)
        # An HTTP request's items belong to no connection: they stay.
        self._items = deque(
            e for e in self._items if e.generation >= generation or e.ticket is not None
        )
        return before - len(self._items)

    def wake(self) -> None:
        """Make the current or next wait_ready() return at once (shutdown)."""
        self._woken = True
        self._wakeup.set()

    async def wait_ready(self) -> None:
        """Return when a batch should be written now: full, old enough, or woken."""
        while True:
            if self._woken:
                self._woken = False
                return
            if len(self._items) >= self.batch_max_rows:
                return
            remaining: float | None = None
            if self._items:
                now = time.monotonic()
                remaining = self.flush_interval_s - (now - self._items[0].received_mono)
                if self.idle_s:
                    quiet_for = now - self._items[-1].received_mono
                    remaining = min(remaining, self.idle_s - quiet_for)
                if remaining <= 0:
                    return
            self._wakeup.clear()
            # On a timeout the loop looks again: messages that came meanwhile restart the
            # idle gap (add() only wakes us for the first message and for a full batch).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)
