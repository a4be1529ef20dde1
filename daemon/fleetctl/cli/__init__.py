"""The `fleetctl` command line."""

from fleetctl.cli.main import main

__all__ = ["main"]
