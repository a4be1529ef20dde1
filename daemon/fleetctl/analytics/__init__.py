"""The analytics API: per-vehicle performance, fleet report, anomalies, charger diagnosis,
current state, dead letters. What this module exports is the package's public API.

Every function takes an asyncpg connection or pool and returns JSON-ready dicts with camelCase
keys and numbers as numbers: exactly what `fleetctl --json` prints and `fleetctl serve` serves.
One module per job: vehicle.py, fleet.py, current.py, chargers.py, rejects.py; rows.py builds
every report's row; the choices they take are fleetctl.params (loaded without the reports).
"""

from fleetctl.analytics.chargers import chargers
from fleetctl.analytics.current import current
from fleetctl.analytics.current_json import current_body
from fleetctl.analytics.daily import fleet_daily
from fleetctl.analytics.fleet import anomalies, fleet_report, fleet_summary
from fleetctl.analytics.rejects import rejects
from fleetctl.analytics.vehicle import vehicle_performance
from fleetctl.analytics.vehicles import search_vehicles
from fleetctl.analytics.window import Window
from fleetctl.params import CURRENT_KINDS, SORT_KEYS, CurrentKind

__all__ = [
    "CURRENT_KINDS",
    "SORT_KEYS",
    "CurrentKind",
    "Window",
    "anomalies",
    "chargers",
    "current",
    "current_body",
    "fleet_daily",
    "fleet_report",
    "fleet_summary",
    "rejects",
    "search_vehicles",
    "vehicle_performance",
]
