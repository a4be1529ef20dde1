"""Throwaway PostgreSQL, Mosquitto and aedes servers for tests, `make demo` and benchmarks.

Each server runs from the machine's own binaries in a temp dir on a free loopback port and is
removed on exit. Servers already running on the standard ports are never used or touched.
"""

from fleet_harness.aedes import AedesServer
from fleet_harness.mosquitto import MosquittoServer
from fleet_harness.netns import NetNamespace
from fleet_harness.ports import free_port
from fleet_harness.postgres import PostgresServer

__all__ = ["AedesServer", "MosquittoServer", "NetNamespace", "PostgresServer", "free_port"]
