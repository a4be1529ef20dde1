"""The `fleetctl` command line, on Click: the frame (app.py) and one module per noun, each
command one function registered with the database role it needs."""

from __future__ import annotations

import click

# Each import registers its module's commands on the root group.
from fleetctl.cli import alerts, assignments, config, maintenance, rejects, reports, serve
from fleetctl.cli.app import EXIT_INTERRUPTED, App, Failure, root

__all__ = [
    "alerts",
    "assignments",
    "config",
    "main",
    "maintenance",
    "rejects",
    "reports",
    "root",
    "serve",
]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fleetctl` console script: the exit code, errors as one line."""
    try:
        result = root.main(args=argv, prog_name="fleetctl", standalone_mode=False, obj=App())
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # `fleetctl` alone, or a group alone: its help
        return exc.exit_code
    except click.UsageError as exc:
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
        click.echo(f"fleetctl: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except Failure as exc:
        click.echo(f"fleetctl: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"fleetctl: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.Abort:
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else 0
