"""How fleetd waits on what it cannot do yet (a database or broker away, a login refused):
when another log line is worth it (at once when it begins, then at most once a minute, so a
long outage neither floods the journal nor goes quiet after its first line), and how slowly a
refusal is retried.

A refusal (the login, a missing database or privilege, a schema not migrated; a broker's
CONNACK 0x04/0x05, 0x86/0x87) is retried, slowly, rather than ending fleetd: no restart fixes
it, its fix is often made on the other side while fleetd runs (ALTER ROLE, `fleetd migrate`
after restoring an older backup, a broker's auth backend back from a hiccup), and fleetd then
resumes by itself within REFUSED_BACKOFF_MAX_S. Until then /healthz, STATUS= and a log line a
minute name the cause and the fix.
"""

from __future__ import annotations

import random
import time

REMIND_EVERY_S = 60.0
REFUSED_BACKOFF_FIRST_S = 10.0
REFUSED_BACKOFF_MAX_S = 120.0


def refused_backoff_s(attempt: int) -> float:
    """Jittered delay before try `attempt` + 1 (from 1) after a refusal: from
    REFUSED_BACKOFF_FIRST_S, doubling, to REFUSED_BACKOFF_MAX_S."""
    grown = REFUSED_BACKOFF_FIRST_S * 2.0 ** min(max(attempt, 1) - 1, 8)
    return random.uniform(0.8, 1.0) * min(REFUSED_BACKOFF_MAX_S, grown)


class Reminder:
    """`due()` while the condition lasts: True at its start and every `every_s` after;
    `clear()` when it ends (the next one starts afresh)."""

    def __init__(self, every_s: float = REMIND_EVERY_S) -> None:
        self.every_s = every_s
        self._since: float | None = None  # monotonic start of the current condition
        self._last = 0.0

    def due(self, now: float | None = None) -> bool:
        """Whether to log the condition now (and count it as logged)."""
        now = time.monotonic() if now is None else now
        if self._since is None:
            self._since = now
        elif now - self._last < self.every_s:
            return False
        self._last = now
        return True

    def lasted_s(self, now: float | None = None) -> float:
        """Seconds since the condition began (0 when there is none)."""
        if self._since is None:
            return 0.0
        return (time.monotonic() if now is None else now) - self._since

    def clear(self) -> None:
        """The condition ended."""
        self._since = None
