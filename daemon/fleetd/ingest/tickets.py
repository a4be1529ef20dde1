"""An HTTP request's readings on their way through the batcher: each item's outcome is settled
as the transaction holding it commits, and the request is answered once all are (never a
success for anything not committed)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

Status = Literal["stored", "duplicate", "conflict", "rejected", "forbidden"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One item's answer: stored (new), duplicate (stored before with the same values),
    conflict (its key is stored with other values: kept as a reject, the stored one unchanged),
    rejected (kept as a reject, with the reason) or forbidden (a device the token may not
    write: not stored)."""

    status: Status
    reason: str | None = None


class Ticket:
    """The outcomes of one request's `size` items; `wait()` returns when every one is settled."""

    def __init__(self, size: int) -> None:
        self.outcomes: list[Outcome | None] = [None] * size
        self._left = size
        self._done = asyncio.Event()
        if not size:
            self._done.set()

    def settle(self, index: int, outcome: Outcome) -> None:
        """Record item `index`'s outcome (once: a later call for the same item is ignored)."""
        if self.outcomes[index] is not None:
            return
        self.outcomes[index] = outcome
        self._left -= 1
        if not self._left:
            self._done.set()

    @property
    def settled(self) -> bool:
        """Every item has its outcome."""
        return self._done.is_set()

    async def wait(self) -> list[Outcome]:
        """The outcomes, in item order, once every item is settled."""
        await self._done.wait()
        return [o for o in self.outcomes if o is not None]
