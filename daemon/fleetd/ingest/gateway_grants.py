"""Which devices each gateway may post readings for (FLEET_GATEWAYS_FILE, optional): one gateway
a line, its id then device-id glob patterns, comma-separated (`GATEWAY-0001 METER-0001*,
VEHICLE-0001*`; `*` for any). With the file, a gateway it does not list may post for no device;
without it, fleetd takes any gateway's word and the broker's ACL is the only control
(docs/ingest.md)."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from fleetd.ingest.pattern_lines import read_pattern_lines
from fleetdb.ingest.messages import DEVICE_ID
from fleetsvc.settings_fields import ConfigError


class GatewaysFileError(ConfigError):
    """The gateways file cannot be read or has a bad line (named by its number)."""


@dataclass(frozen=True)
class GatewayGrants:
    """Device-id patterns per gateway id."""

    patterns: dict[str, tuple[str, ...]]

    def allows(self, gateway: str, device: str) -> bool:
        """May `gateway` post readings of `device`?"""
        return any(fnmatchcase(device, p) for p in self.patterns.get(gateway, ()))


def load_grants(path: Path) -> GatewayGrants:
    """The grants of `path`: `GATEWAY PATTERN[,PATTERN...]` a line; blank lines and `#` lines
    are skipped (fleetd.ingest.pattern_lines). A file without a gateway line is an error."""
    name = "FLEET_GATEWAYS_FILE"
    patterns: dict[str, tuple[str, ...]] = {}
    for number, gateway, found in read_pattern_lines(path, name, GatewaysFileError):
        if not DEVICE_ID.fullmatch(gateway):
            raise GatewaysFileError(
                f"{name} line {number}: gateway id must match [A-Za-z0-9_.:-]{{1,64}}"
            )
        if gateway in patterns:
            raise GatewaysFileError(f"{name} line {number}: gateway {gateway} listed twice")
        if not found:
            raise GatewaysFileError(
                f"{name} line {number}: gateway {gateway} needs device-id patterns (* for any)"
            )
        patterns[gateway] = found
    if not patterns:
        # A file of comments alone would refuse every gateway's every element, silently: a
        # mistake (a truncated deploy, the wrong path), refused as an empty tokens file is.
        raise GatewaysFileError(f"{name}: {path} holds no gateway")
    return GatewayGrants(patterns)
