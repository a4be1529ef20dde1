"""The device kinds: one record per kind, from which every table name, column list and SQL
statement about a kind's readings derives (history, current row, rollups, late readings, cold
blocks and summaries, retention, compaction, the reports' table names).

A kind is a device id, a timestamp and value columns: exactly one energy column (kWh as
numeric(12,6): summed by every rollup, and kept in millionths in cold blocks) and real columns,
each of which the rollups may also keep as a spread (Σ/min/max over the bucket) or as edges (the
bucket's first and last value with their timestamps). The cold tier's formats hold at most one
spread and one edge column per kind (their slots, `temp_*` and `soc_*` in fleetdb.cold, are
named for the vehicle's battery temperature and SoC, the first kind to have them).

Adding a kind: one entry in REGISTRY (or a registry of its own passed to fleetd, the writer and
the compactor) and one migration creating its tables (`python -m fleetdb.kind_tables <name>` prints
it, docs/architecture.md). Nothing here is global state: code that can meet other kinds takes
a `kinds` tuple, REGISTRY by default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from fleetdb.readings import MeterReading, VehicleReading

# The SQL type of a value column in the tables, and of its parameter array in statements.
SqlType = Literal["numeric(12,6)", "real"]
_PARAM: dict[str, str] = {"numeric(12,6)": "float8", "real": "real"}
# What the rollups keep of a real column besides nothing: Σ/min/max, or first/last by time.
Role = Literal["", "spread", "edges"]
# Suffixes of the rollup tables, finest level first (fleetdb.rollups.LEVELS).
ROLLUP_SUFFIXES = ("10min", "hourly", "4h")
# numeric(12,6) holds < 1e6; anything near that per interval is a broken meter, not a reading.
MAX_KWH_PER_READING = 100_000.0


@dataclass(frozen=True)
class Column:
    """One value column: its name in the tables (and the reading's attribute), in the payload
    (with the bounds a valid value keeps), its SQL type, and (real columns) what the rollups
    keep of it under which prefix."""

    name: str
    wire: str
    sql_type: SqlType = "real"
    role: Role = ""
    prefix: str = ""  # rollup columns {prefix}_sum/_min/_max or {prefix}_first/_last(_ts)
    ge: float | None = None
    gt: float | None = None
    le: float | None = None

    @property
    def param(self) -> str:
        """The element type of this column's parameter array (float8 for numeric: PostgreSQL
        converts it with 15 significant digits, so "2.345678" is stored as exactly that)."""
        return _PARAM[self.sql_type]

    @property
    def numeric(self) -> bool:
        return self.sql_type != "real"


# eq=False: a kind is its one record (hashed by identity: cheap as a cache key per message).
@dataclass(frozen=True, eq=False)
class DeviceKind:
    """One device kind. Table names derive from `name`: {name}_readings (history, partitioned
    by day), {name}_current, {name}_late, {name}_cold, {name}_cold_hours and one rollup table
    per level ({name}_10min, {name}_hourly, {name}_4h)."""

    name: str  # "meter": also the prefix of its tables
    topic: str  # MQTT topic level: {topic}/{device id}/telemetry
    device: str  # the device id column, e.g. meter_id
    id_wire: str  # the payload's device id field, e.g. meterId
    columns: tuple[Column, ...]  # in the order of the reading's fields and the statements' arrays
    # The decoded reading's class: fields (device id, ts, *columns), attributes named as the
    # columns (fleetdb.readings.MeterReading). Decoding builds it, the writer reads it.
    reading: type[Any]

    def __post_init__(self) -> None:
        energy = [c for c in self.columns if c.numeric]
        if len(energy) != 1:
            raise ValueError(f"kind {self.name}: exactly one numeric(12,6) energy column")
        for role in ("spread", "edges"):
            cols = [c for c in self.columns if c.role == role]
            if len(cols) > 1 or any(c.numeric or not c.prefix for c in cols):
                raise ValueError(f"kind {self.name}: at most one real {role} column, with prefix")

    # --- tables -----------------------------------------------------------------------------
    @property
    def history(self) -> str:
        return f"{self.name}_readings"

    @property
    def current(self) -> str:
        return f"{self.name}_current"

    @property
    def late(self) -> str:
        return f"{self.name}_late"

    @property
    def cold(self) -> str:
        return f"{self.name}_cold"

    @property
    def hours(self) -> str:
        """The cold tier's hourly summaries."""
        return f"{self.name}_cold_hours"

    def rollup(self, suffix: str) -> str:
        """The rollup table of the level with `suffix` (ROLLUP_SUFFIXES)."""
        return f"{self.name}_{suffix}"

    @property
    def rollups(self) -> tuple[str, ...]:
        """Every rollup table, finest level first."""
        return tuple(self.rollup(s) for s in ROLLUP_SUFFIXES)

    # --- columns ----------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """The value columns' names in order."""
        return tuple(c.name for c in self.columns)

    @property
    def energy(self) -> Column:
        return next(c for c in self.columns if c.numeric)

    @property
    def kwh(self) -> str:
        """The energy column's name."""
        return self.energy.name

    @property
    def floats(self) -> tuple[str, ...]:
        """The real columns in order: a cold block's float columns."""
        return tuple(c.name for c in self.columns if not c.numeric)

    @property
    def spread(self) -> Column | None:
        return next((c for c in self.columns if c.role == "spread"), None)

    @property
    def edges(self) -> Column | None:
        return next((c for c in self.columns if c.role == "edges"), None)

    @property
    def spread_at(self) -> int | None:
        """Index of the spread column in `floats` (cold blocks)."""
        return None if self.spread is None else self.floats.index(self.spread.name)

    @property
    def edges_at(self) -> int | None:
        """Index of the edge column in `floats` (cold blocks)."""
        return None if self.edges is None else self.floats.index(self.edges.name)

    # KindLayout's names (fleetdb.cold.layout), kept for the cold tier and the reports.
    @property
    def kind(self) -> str:
        return self.name

    @property
    def raw(self) -> str:
        return self.history


METER = DeviceKind(
    name="meter",
    topic="meters",
    device="meter_id",
    id_wire="meterId",
    columns=(
        Column("kwh_consumed_ac", "kwhConsumedAc", "numeric(12,6)", ge=0, le=MAX_KWH_PER_READING),
        Column("voltage", "voltage", gt=0, le=1000),
    ),
    reading=MeterReading,
)
VEHICLE = DeviceKind(
    name="vehicle",
    topic="vehicles",
    device="vehicle_id",
    id_wire="vehicleId",
    columns=(
        Column("soc", "soc", role="edges", prefix="soc", ge=0, le=100),
        Column("kwh_delivered_dc", "kwhDeliveredDc", "numeric(12,6)", ge=0, le=MAX_KWH_PER_READING),
        Column("battery_temp", "batteryTemp", role="spread", prefix="temp", ge=-50, le=150),
    ),
    reading=VehicleReading,
)
# The built-in kinds. Order matters where output lists kinds (meters, then vehicles).
REGISTRY: tuple[DeviceKind, ...] = (METER, VEHICLE)


def by_name(name: str, kinds: Iterable[DeviceKind] = REGISTRY) -> DeviceKind:
    """The kind called `name`; KeyError when there is none."""
    for k in kinds:
        if k.name == name:
            return k
    raise KeyError(name)


def by_topic(topic: str, kinds: Iterable[DeviceKind] = REGISTRY) -> DeviceKind | None:
    """The kind whose topic level is `topic`, if any."""
    return next((k for k in kinds if k.topic == topic), None)


# What modules take for "a kind": the record, or a built-in kind's name (the reports' way).
KindRef = DeviceKind | str


def resolve(kind: KindRef) -> DeviceKind:
    """The record of `kind` (a built-in one when given by name)."""
    return kind if isinstance(kind, DeviceKind) else by_name(kind)
