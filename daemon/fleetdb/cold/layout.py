"""Where cold data lives: per kind (fleetdb.kinds), the tables and columns, and which block a
device is in."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from fleetdb.kinds import REGISTRY, DeviceKind

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


# Table and column names of one kind (names come only from the registry, never from input).
KindLayout = DeviceKind
LAYOUTS: dict[str, DeviceKind] = {k.name: k for k in REGISTRY}


def layouts(kinds: tuple[DeviceKind, ...] = REGISTRY) -> dict[str, DeviceKind]:
    """The kinds by name."""
    return {k.name: k for k in kinds}


def day_start(day: date) -> datetime:
    """UTC midnight at the start of `day`."""
    return datetime.combine(day, time(), UTC)


def hour_start(day: date, hour: int) -> datetime:
    """UTC start of hour `hour` (0-23) of `day`."""
    return day_start(day) + hour * HOUR


def default_before(after_days: int, today: date | None = None) -> date:
    """Days before this one are compacted: `after_days` whole days after they closed."""
    if after_days < 1:
        raise ValueError("FLEET_COMPACT_AFTER_DAYS must be at least 1")
    return (today or datetime.now(UTC).date()) - timedelta(days=after_days)


def latest_allowed(today: date | None = None) -> date:
    """The latest `before` accepted: yesterday still takes readings delayed by clock skew,
    and writers only take the day lock for days before their own today."""
    return (today or datetime.now(UTC).date()) - timedelta(days=1)
