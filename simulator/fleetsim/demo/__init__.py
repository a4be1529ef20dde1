"""`make demo`: throwaway PostgreSQL + Mosquitto, fleetd as a real process, fleet-sim compressing
one simulated hour of 10,000 meters + 10,000 vehicles into about a minute, then what arrived and
the fleet efficiency report next to the simulator's truth (fleetsim.demo.report).

In a terminal the system then stays up (fleetsim.demo.live): `fleetctl serve` with the dashboard,
the simulator at real-time pace, three fleetctl commands to try; Ctrl-C removes everything.
Without one (CI, a pipe) it ends after the report. Run as `python -m fleetsim.demo`.
"""
