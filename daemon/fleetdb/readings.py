"""The readings the built-in kinds decode into (fleetdb.kinds names them as each kind's
`reading`). A kind's reading class has the device id column, `ts` and the kind's value columns
as attributes, in that order of fields: decoding builds it positionally, and the writer reads
its columns by name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class Reading(Protocol):
    """What every kind's reading has besides its kind's columns (read by name)."""

    @property
    def ts(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One valid meter reading; `ts` is in UTC."""

    meter_id: str
    ts: datetime
    kwh_consumed_ac: float
    voltage: float


@dataclass(frozen=True, slots=True)
class VehicleReading:
    """One valid vehicle reading; `ts` is in UTC."""

    vehicle_id: str
    ts: datetime
    soc: float
    kwh_delivered_dc: float
    battery_temp: float
