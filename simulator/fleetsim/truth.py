"""What the simulator published, summed exactly: the reference the database must match.

Energy is summed as integer micro-kWh, the same integers the payloads' decimal strings were
formatted from (`model.kwh_text`), so a truth sum equals PostgreSQL's numeric(12,6) sum of the
stored readings to the last digit. Only valid, unique readings count; injected invalid messages
and duplicates are counted on their own.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetsim.model import METER, Fleet, kwh_text, rfc3339_s


class Truth:
    """Per device and UTC hour: the sum of published kWh (micro-kWh) and the reading count."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.meter_hours: list[dict[str, list[int]]] = [{} for _ in fleet.meter_ids]
        self.vehicle_hours: list[dict[str, list[int]]] = [{} for _ in fleet.vehicle_ids]
        self.meters = 0
        self.vehicles = 0
        self.invalid = 0
        self.duplicates = 0

    def add(self, kind: int, index: int, hour: str, micro: int) -> None:
        """Count one valid reading that was published (once)."""
        if kind == METER:
            bucket = self.meter_hours[index]
            self.meters += 1
        else:
            bucket = self.vehicle_hours[index]
            self.vehicles += 1
        acc = bucket.get(hour)
        if acc is None:
            bucket[hour] = [micro, 1]
        else:
            acc[0] += micro
            acc[1] += 1

    @property
    def valid(self) -> int:
        """Unique valid readings published (the rows the history should end up with)."""
        return self.meters + self.vehicles

    def meter_total(self, index: int) -> int:
        """All AC energy of one meter in micro-kWh."""
        return sum(v[0] for v in self.meter_hours[index].values())

    def vehicle_total(self, index: int) -> int:
        """All DC energy of one vehicle in micro-kWh."""
        return sum(v[0] for v in self.vehicle_hours[index].values())

    def to_json(
        self, *, seed: int, interval_s: int, start: datetime, end: datetime
    ) -> dict[str, Any]:
        """The truth document (kWh as exact decimal strings)."""
        f = self.fleet
        meters = {
            mid: {
                "efficiency": f.meter_eff[i],
                "band": f.meter_band[i],
                "acKwh": kwh_text(self.meter_total(i)),
                "hours": {
                    h: {"acKwh": kwh_text(v[0]), "readings": v[1]}
                    for h, v in sorted(self.meter_hours[i].items())
                },
            }
            for i, mid in enumerate(f.meter_ids)
        }
        vehicles = {}
        for j, vid in enumerate(f.vehicle_ids):
            m = f.vehicle_meter[j]
            vehicles[vid] = {
                "meterId": f.meter_ids[m],
                # The meter written as its assignment (differs for --wrong-assignments).
                "registeredMeterId": f.meter_ids[f.registered_meter[j]],
                "efficiency": f.meter_eff[m],
                "band": f.meter_band[m],
                "dcKwh": kwh_text(self.vehicle_total(j)),
                "hours": {
                    h: {"dcKwh": kwh_text(v[0]), "readings": v[1]}
                    for h, v in sorted(self.vehicle_hours[j].items())
                },
            }
        return {
            "seed": seed,
            "interval_s": interval_s,
            "start": rfc3339_s(start),
            "end": rfc3339_s(end),
            "vehiclesPerMeter": f.config.vehicles_per_meter,
            "wrongAssignments": [
                {
                    "vehicleId": vid,
                    "registeredMeterId": f.meter_ids[f.registered_meter[j]],
                    "meterId": f.meter_ids[f.vehicle_meter[j]],
                }
                for j, vid in enumerate(f.vehicle_ids)
                if f.registered_meter[j] != f.vehicle_meter[j]
            ],
            # Vehicles whose telematics sleep each night: nothing published in the window.
            "sleepWindows": [
                {
                    "vehicleId": f.vehicle_ids[j],
                    "fromUtc": f"{start_min // 60 % 24:02d}:{start_min % 60:02d}",
                    "hours": minutes / 60,
                }
                for j, (start_min, minutes) in sorted(f.sleep.items())
            ],
            # A replayed run of the same fleet published beside this one from `from` on: two
            # series per id over the overlap (both counted in the sums above).
            "replay": (
                None
                if f.replay_from is None
                else {"lagS": f.config.replay_lag_s, "from": rfc3339_s(f.replay_from)}
            ),
            "meters": meters,
            "vehicles": vehicles,
            "published": {
                "meters": self.meters,
                "vehicles": self.vehicles,
                "invalid": self.invalid,
                "duplicates": self.duplicates,
            },
        }

    def write(
        self, path: str | Path, *, seed: int, interval_s: int, start: datetime, end: datetime
    ) -> None:
        """Write the truth document as JSON (atomically: a reader never sees half a file)."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        doc = self.to_json(seed=seed, interval_s=interval_s, start=start, end=end)
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        tmp.replace(target)
