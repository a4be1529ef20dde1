"""The database logins fleetctl's commands use: each command declares one (fleetctl.cli.app),
and the settings map it to the variable holding that login's URL (fleetctl.settings)."""

from __future__ import annotations

from enum import Enum


class Role(Enum):
    """The database login a command needs, and the variable that names it."""

    ANALYTICS = "analytics"  # reads: a fleet_analytics login or a read replica
    ADMIN = "admin"  # assignments, alert state, replayed rejects: a fleet_admin login
    OWNER = "owner"  # partitions and compaction: the schema owner

    @property
    def variable(self) -> str:
        """The environment variable of this role's database URL."""
        return f"FLEET_{'' if self is Role.OWNER else self.name + '_'}DATABASE_URL"
