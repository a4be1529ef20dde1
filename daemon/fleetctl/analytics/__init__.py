"""The analytics API: per-vehicle performance, fleet report, anomalies, current state.

Every function takes an asyncpg connection or pool and returns JSON-ready dicts with camelCase
keys and numbers as numbers: exactly what `fleetctl --json` prints and `fleetctl serve` serves.
One module per job: vehicle.py, fleet.py, current.py, chargers.py; rows.py builds every
report's row.
"""

from fleetctl.analytics.chargers import chargers
from fleetctl.analytics.current import CURRENT_KINDS, CurrentKind, current
from fleetctl.analytics.fleet import SORT_KEYS, anomalies, fleet_report
from fleetctl.analytics.vehicle import vehicle_performance

__all__ = [
    "CURRENT_KINDS",
    "SORT_KEYS",
    "CurrentKind",
    "anomalies",
    "chargers",
    "current",
    "fleet_report",
    "vehicle_performance",
]
