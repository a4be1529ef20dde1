"""Time windows: half-open [start, end) in UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from fleetctl.errors import AnalyticsError


class InvalidWindowError(AnalyticsError, ValueError):
    """A window that cannot be queried (end before start, bad timestamp, no offset)."""


def parse_rfc3339(text: str, name: str) -> datetime:
    """An RFC 3339 timestamp with an offset, as an aware UTC datetime."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidWindowError(f"--{name}: not an RFC 3339 timestamp: {text!r}") from exc
    if value.tzinfo is None:
        raise InvalidWindowError(f"--{name}: needs a UTC offset (e.g. {text}Z): {text!r}")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it
        raise InvalidWindowError(f"--{name}: out of range: {text!r}") from None


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC; start < end."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidWindowError("window bounds must be timezone-aware")
        if not self.start < self.end:
            raise InvalidWindowError(
                f"window end {self.end.isoformat()} is not after start {self.start.isoformat()}"
            )

    @classmethod
    def last_hours(cls, hours: float, now: datetime | None = None) -> Window:
        """The `hours` ending now."""
        if not hours > 0:
            raise InvalidWindowError(f"--hours must be > 0 (got {hours})")
        end = (now or datetime.now(UTC)).astimezone(UTC)
        try:
            return cls(end - timedelta(hours=hours), end)
        except OverflowError:  # hours=1e9 and the like
            raise InvalidWindowError(f"--hours out of range (got {hours:g})") from None

    @classmethod
    def parse(
        cls,
        *,
        hours: float | None = None,
        start: str | None = None,
        end: str | None = None,
        now: datetime | None = None,
    ) -> Window:
        """From CLI/HTTP parameters: --hours H, or --start/--end (RFC 3339); default 24 h."""
        if start is None and end is None:
            return cls.last_hours(24.0 if hours is None else hours, now)
        if hours is not None and start is not None and end is not None:
            raise InvalidWindowError("give --hours or --start/--end, not both")
        stop = parse_rfc3339(end, "end") if end else (now or datetime.now(UTC)).astimezone(UTC)
        if start is None:
            return cls(stop - timedelta(hours=24.0 if hours is None else hours), stop)
        begin = parse_rfc3339(start, "start")
        if end is None and hours is not None:
            return cls(begin, begin + timedelta(hours=hours))
        return cls(begin, stop)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def as_json(self) -> dict[str, str]:
        return {"start": iso(self.start), "end": iso(self.end)}


@lru_cache(maxsize=8192)  # a fleet report formats the same window bounds 10,000s of times
def iso(ts: datetime) -> str:
    """RFC 3339 in UTC with a Z suffix."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
