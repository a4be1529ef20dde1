"""A meter or vehicle with no reading for longer than the offline limit."""

from __future__ import annotations

from collections.abc import Iterator

from fleetctl.alerts.rules.base import Evidence, Open, Wanted


class DeviceOffline:
    """device_offline, per device, with the seconds since its newest reading."""

    kinds: tuple[str, ...] = ("device_offline",)

    def wanted(self, seen: Evidence, was: Open) -> Iterator[Wanted]:
        """Every device past the limit (no hysteresis: a reading ends it)."""
        for kind, device, age in seen.offline:
            yield Wanted("device_offline", device, age, {"kind": kind})
