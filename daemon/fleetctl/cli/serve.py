"""`fleetctl serve`: the analytics HTTP API (/v1, the dashboard) until SIGTERM."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import click

from fleetctl.cli.app import Service, root, service
from fleetctl.roles import Role


@service(root, "serve", role=Role.ANALYTICS)
@click.option(
    "--addr", metavar="HOST:PORT", help="where to listen (default: FLEET_API_ADDR, 127.0.0.1:9109)"
)
def serve(addr: str | None) -> Service:
    """The analytics HTTP API (/v1/...) and the dashboard, until SIGTERM; it reads as
    FLEET_ANALYTICS_DATABASE_URL, and POST /v1/assignments writes as FLEET_ADMIN_DATABASE_URL."""

    def run(settings: Any, url: str) -> Coroutine[Any, Any, int]:
        from fleetctl.api.server import serve as run_server  # noqa: PLC0415
        from fleetctl.settings import ServeConfig  # noqa: PLC0415

        config = ServeConfig.from_settings(settings, addr=addr, database_url=url)
        return run_server(config)

    return run
