"""`fleetctl check-config`: the effective settings, credentials masked."""

from __future__ import annotations

import json

import click

from fleetctl.cli.app import App, echo, guarded, root


@root.command("check-config")
@click.pass_obj
def check_config(app: App) -> None:
    """Print the effective settings (file, then FLEET_* variables; credentials masked) and
    exit 2 with one line on a bad value."""
    from fleetctl.settings import DEFAULT_CONFIG  # noqa: PLC0415

    settings = guarded(app, app.settings)
    source = app.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    effective = {"configFile": str(source) if source else None, **settings.masked()}
    echo(json.dumps(effective, indent=2))
