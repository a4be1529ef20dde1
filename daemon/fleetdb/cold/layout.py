"""Where cold data lives: per kind, the tables and columns, and which block a device is in."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from fleetdb.rollups import Kind

# Devices are spread over this many blocks per hour by a hash of their id: ~160 devices (~9,400
# readings) per block at 10,000 devices, small enough that one device's hour decodes in ~1 ms
# and large enough for zlib to learn the columns (2.6 B per meter reading at this size against
# 2.5 B with 300 devices and 2.7 B with 75). Stored with each block: changing it needs a
# rewrite of the cold tables.
GROUPS = 64
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class KindLayout:
    """Table and column names of one kind (names come only from here, never from input)."""

    kind: Kind
    raw: str
    device: str
    kwh: str
    floats: tuple[str, ...]
    cold: str
    hours: str
    late: str


LAYOUTS: dict[Kind, KindLayout] = {
    "meter": KindLayout(
        kind="meter",
        raw="meter_readings",
        device="meter_id",
        kwh="kwh_consumed_ac",
        floats=("voltage",),
        cold="meter_cold",
        hours="meter_cold_hours",
        late="meter_late",
    ),
    "vehicle": KindLayout(
        kind="vehicle",
        raw="vehicle_readings",
        device="vehicle_id",
        kwh="kwh_delivered_dc",
        floats=("soc", "battery_temp"),
        cold="vehicle_cold",
        hours="vehicle_cold_hours",
        late="vehicle_late",
    ),
}


def group_of(device: str) -> int:
    """The block group of a device: stable across processes and versions (CRC-32)."""
    return zlib.crc32(device.encode()) % GROUPS


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
