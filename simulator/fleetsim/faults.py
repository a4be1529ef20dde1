"""Fault injection on the message stream: invalid messages, duplicates, reordering.

Applied between the model and the publisher, deterministically from the seed. Clock skew is a
property of a device and lives in the model (`FleetConfig.clock_skew_s`); QoS is the publisher's.

* invalid: the reading is replaced by a broken message (bad JSON, missing field, out-of-range
  value, id not matching the topic). It never reaches the truth sums. Every invalid payload
  carries a unique `"seq"` so fleetd's reject dedup (topic, sha256(payload)) keeps each one.
* duplicate: the same bytes are published again a few positions later; the truth counts the
  reading once (the database must absorb the copy).
* out-of-order: the reading is held back a few positions, by default up to two ticks' worth of
  messages, so a device's reading can arrive after its next one.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from fleetsim.model import Message
from fleetsim.truth import Truth

Outgoing = tuple[str, bytes]
"""(topic, payload) as handed to the publisher."""

INVALID_KINDS = ("bad-json", "missing-field", "out-of-range", "wrong-id")


@dataclass(frozen=True)
class FaultConfig:
    """Rates are per reading, in [0, 1]. max_delay 0 = two ticks' worth of messages."""

    invalid_rate: float = 0.0
    duplicate_rate: float = 0.0
    out_of_order_rate: float = 0.0
    max_delay: int = 0

    def check(self) -> None:
        """Raise ValueError naming the first bad option."""
        for name, value in (
            ("--invalid-rate", self.invalid_rate),
            ("--duplicate-rate", self.duplicate_rate),
            ("--out-of-order-rate", self.out_of_order_rate),
        ):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.max_delay < 0:
            raise ValueError("max_delay must be >= 0")


def make_invalid(payload: bytes, variant: int, seq: int) -> bytes:
    """A broken copy of a valid payload; `seq` makes it unique. Each variant fails validation."""
    tail = b',"seq":' + str(seq).encode() + b"}"
    if variant == 0:  # truncated JSON: no closing brace
        return payload[:-1] + tail[:-1]
    if variant == 1:  # the timestamp field is missing
        return payload.replace(b'"timestamp"', b'"time"')[:-1] + tail
    if variant == 2:  # negative energy ("-1" in front: "-0.0" would still be >= 0)
        body = payload.replace(b'"kwhConsumedAc":', b'"kwhConsumedAc":-1')
        body = body.replace(b'"kwhDeliveredDc":', b'"kwhDeliveredDc":-1')
        return body[:-1] + tail
    # The id in the body names another device than the topic.
    return payload.replace(b'Id":"', b'Id":"X', 1)[:-1] + tail


class FaultInjector:
    """Turns the model's messages into what is published, keeping `truth` in step."""

    def __init__(self, config: FaultConfig, seed: int, truth: Truth, devices: int) -> None:
        config.check()
        self.config = config
        self.truth = truth
        self._rng = random.Random(f"fleetsim:{seed}:faults")
        self._max_delay = config.max_delay or max(2 * devices, 1)
        self._pending: list[tuple[int, int, str, bytes]] = []  # (release position, seq, ...)
        self._pos = 0
        self._seq = 0
        self._active = bool(
            config.invalid_rate or config.duplicate_rate or config.out_of_order_rate
        )

    def apply(self, messages: list[Message]) -> list[Outgoing]:
        """The messages of one tick, with faults applied, in publish order."""
        truth = self.truth
        if not self._active:
            for kind, index, _topic, _payload, micro, hour in messages:
                truth.add(kind, index, hour, micro)
            self._pos += len(messages)
            return [(m[2], m[3]) for m in messages]
        cfg, rng, pending = self.config, self._rng, self._pending
        out: list[Outgoing] = []
        for kind, index, topic, payload, micro, hour in messages:
            if rng.random() < cfg.invalid_rate:
                self._seq += 1
                truth.invalid += 1
                variant = rng.randrange(len(INVALID_KINDS))
                self._emit(out, topic, make_invalid(payload, variant, self._seq))
                continue
            truth.add(kind, index, hour, micro)
            if rng.random() < cfg.duplicate_rate:
                truth.duplicates += 1
                self._seq += 1
                release = self._pos + rng.randint(1, self._max_delay)
                heapq.heappush(pending, (release, self._seq, topic, payload))
            if rng.random() < cfg.out_of_order_rate:
                self._seq += 1
                release = self._pos + rng.randint(1, self._max_delay)
                heapq.heappush(pending, (release, self._seq, topic, payload))
            else:
                self._emit(out, topic, payload)
        return out

    def _emit(self, out: list[Outgoing], topic: str, payload: bytes) -> None:
        out.append((topic, payload))
        self._pos += 1
        pending = self._pending
        while pending and pending[0][0] <= self._pos:
            _, _, t, p = heapq.heappop(pending)
            out.append((t, p))
            self._pos += 1

    def flush(self) -> list[Outgoing]:
        """Everything still held back (at the end of a run)."""
        out = [(t, p) for _, _, t, p in sorted(self._pending)]
        self._pos += len(out)
        self._pending.clear()
        return out

    @property
    def held(self) -> int:
        """Messages delayed or duplicated and not yet released."""
        return len(self._pending)
