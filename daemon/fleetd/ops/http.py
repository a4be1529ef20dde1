"""fleetd's ops HTTP endpoint: /healthz, /readyz and /metrics on the shared server
(fleetsvc.web).

The analytics API is not here: it is `fleetctl serve`, a process of its own, so a report never
holds up ingest.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fleetd.ops.health import check
from fleetsvc.web import Call, HttpServer, Route, json_response

if TYPE_CHECKING:
    from fleetd.service import Daemon


class OpsHttpServer(HttpServer):
    """One daemon's ops endpoint; `serve(daemon)` is a Daemon companion."""

    def __init__(self, addr: str, daemon: Daemon) -> None:
        self._daemon = daemon
        super().__init__(
            addr,
            (
                Route("GET", "/healthz", self._health, summary="healthy: 200, else 503"),
                Route("GET", "/readyz", self._ready, summary="healthy and subscribed"),
                Route("GET", "/metrics", self._metrics, summary="Prometheus metrics"),
            ),
            name="fleetd-ops",
            # Prometheus scrapes /metrics every few seconds and probes ask /healthz: at info
            # they would drown the ingest lines. FLEET_LOG_LEVEL=debug shows them.
            access_log_level=logging.DEBUG,
        )

    async def serve(self, _daemon: Daemon) -> None:
        """The companion entry point (Daemon companions take the daemon)."""
        await self.run()

    async def _metrics(self, _call: Call) -> web.StreamResponse:
        body = generate_latest(self._daemon.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, _call: Call) -> web.StreamResponse:
        return json_response(*health_response(self._daemon))

    async def _ready(self, _call: Call) -> web.StreamResponse:
        return json_response(*health_response(self._daemon, ready=True))


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
