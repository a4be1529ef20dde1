"""The ack rule: a message is acknowledged after the transaction holding it commits (for a JSON
array, the transactions holding all its elements), in the order messages arrived, on the
connection they arrived on."""

from __future__ import annotations

from collections.abc import Callable

from fleetd.ingest.batcher import Batch

Ack = Callable[[int, int, int], bool]
"""ack(packet_id, qos, generation) -> False when skipped (the message came on an older
connection; the broker redelivers it on the current one)."""


class AckSequencer:
    """Releases committed batches' acks in batch order.

    Batches are numbered as they are cut from the FIFO; with several writers a later batch can
    commit first. MQTT requires a subscriber to acknowledge in the order it received, so such a
    batch waits here until every earlier one has committed.
    """

    def __init__(self, ack: Ack) -> None:
        self._ack = ack
        self._committed: dict[int, Batch] = {}
        self._next = 0

    @property
    def waiting(self) -> int:
        """Committed batches held back behind an earlier one still in its transaction."""
        return len(self._committed)

    def committed(self, seq: int, batch: Batch) -> tuple[int, int]:
        """Record that batch `seq` committed; ack everything now in order. (acked, skipped)."""
        self._committed[seq] = batch
        acked = skipped = 0
        ack = self._ack
        while self._next in self._committed:
            for env in self._committed.pop(self._next).envelopes:
                if not env.last:
                    # An array's element before its last: the message is acked with the last
                    # element, whose batch is this one or a later one (released after this).
                    continue
                if ack(env.mid, env.qos, env.generation):
                    acked += 1
                else:
                    skipped += 1
            self._next += 1
        return acked, skipped
