"""fleetd's ops HTTP endpoint: /healthz, /readyz and /metrics on the shared tiny server.

The analytics API is not here: it is `fleetctl serve`, a process of its own, so a report never
holds up ingest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fleetd.ops.health import check
from fleetsvc.http import HttpServer, Response, json_response

if TYPE_CHECKING:
    from fleetd.service import Daemon


class OpsHttpServer(HttpServer):
    """One daemon's ops endpoint; `run(daemon)` is a Daemon companion."""

    def __init__(self, addr: str, daemon: Daemon) -> None:
        super().__init__(addr, name="fleetd-ops")
        self._daemon = daemon
        self.add_route("/metrics", self._metrics)
        self.add_route("/healthz", self._health)
        self.add_route("/readyz", self._health)

    async def serve(self, _daemon: Daemon) -> None:
        """The companion entry point (Daemon companions take the daemon)."""
        await self.run()

    async def _metrics(self, path: str, _query: dict[str, str]) -> Response:
        if path != "/metrics":
            return json_response(404, {"error": "not found", "path": path})
        return 200, CONTENT_TYPE_LATEST, generate_latest(self._daemon.metrics.registry)

    async def _health(self, path: str, _query: dict[str, str]) -> Response:
        if path not in ("/healthz", "/readyz"):
            return json_response(404, {"error": "not found", "path": path})
        return json_response(*health_response(self._daemon, ready=path == "/readyz"))


def health_response(daemon: Daemon, *, ready: bool = False) -> tuple[int, dict[str, object]]:
    """(status, body) of /healthz, or of /readyz when `ready` (also needs subscribed and not
    shutting down, so a load balancer stops sending before we stop serving)."""
    health = check(daemon)
    reasons = list(health.reasons)
    if ready:
        if not daemon.ready.is_set():
            reasons.insert(0, "not subscribed yet")
        if daemon.stopping:
            reasons.insert(0, "shutting down")
    if reasons:
        return 503, {"status": "unhealthy", "reasons": reasons, **health.details}
    return 200, {"status": "ok", **health.details}
