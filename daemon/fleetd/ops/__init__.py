"""Operations companions of the daemon: the ops HTTP server and the systemd notifier.

`fleetd run` calls install(daemon) (see fleetd.cli._install_companions).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetd.ops.http import OpsHttpServer
    from fleetd.ops.ingest_http import IngestHttpServer
    from fleetd.service import Daemon

# The HTTP server of each daemon installed here, so tests and callers can find the bound port.
_SERVERS: weakref.WeakKeyDictionary[Daemon, OpsHttpServer] = weakref.WeakKeyDictionary()
_INGEST: weakref.WeakKeyDictionary[Daemon, IngestHttpServer] = weakref.WeakKeyDictionary()


def install(daemon: Daemon) -> None:
    """Add the systemd notifier, the ops HTTP server and HTTP ingest (when its address is set)
    to `daemon.companions`."""
    # Imported here: fleetd.notify imports fleetd.ops.health, which loads this package first.
    from fleetd.notify import notifier_task  # noqa: PLC0415
    from fleetd.ops.http import OpsHttpServer  # noqa: PLC0415
    from fleetsvc.web import parse_addr  # noqa: PLC0415

    daemon.companions.append(notifier_task)
    if parse_addr(daemon.settings.http_addr) is not None:
        server = OpsHttpServer(daemon.settings.http_addr, daemon)
        _SERVERS[daemon] = server
        daemon.companions.append(server.serve)
    if parse_addr(daemon.settings.ingest_http_addr) is not None:
        from fleetd.ops.ingest_http import IngestHttpServer  # noqa: PLC0415

        ingest = IngestHttpServer(daemon)
        _INGEST[daemon] = ingest
        daemon.companions.append(ingest.serve)


def http_server(daemon: Daemon) -> OpsHttpServer | None:
    """The ops HTTP server install() added to `daemon`, if any."""
    return _SERVERS.get(daemon)


def ingest_server(daemon: Daemon) -> IngestHttpServer | None:
    """The HTTP ingest server install() added to `daemon`, if any."""
    return _INGEST.get(daemon)
