"""`fleetctl partitions …` and `fleetctl compact`: the schema owner's maintenance
(FLEET_DATABASE_URL)."""

from __future__ import annotations

from datetime import date
from typing import Any

import click

from fleetctl.cli import render
from fleetctl.cli.app import Job, Output, command, root
from fleetctl.errors import AnalyticsError
from fleetctl.roles import Role


@root.group("partitions")
def partitions() -> None:
    """Daily partitions: ensure ahead, list, drop old."""


def show_ensure(r: dict[str, Any], _out: Output) -> str:
    """One line: how many were created."""
    return f"{r['created']} partition tables created"


@command(partitions, "ensure", role=Role.OWNER, show=show_ensure)
def ensure() -> Job:
    """Create the partitions of the days ahead (fleetd does it too, hourly)."""
    from fleetctl.admin.partitions import partitions_command  # noqa: PLC0415

    return lambda conn: partitions_command(conn, "ensure", None, rollups=False)


def show_partitions(result: list[dict[str, Any]], _out: Output) -> str:
    """One line per partition: table, day, size, rows."""
    rows = [
        (p["table"], p["day"], f"{p['bytes'] / 1e6:,.1f}", f"{p['rowsEstimate']:,}") for p in result
    ]
    return render.table(("table", "day", "MB", "rows (est.)"), rows, right={2, 3})


@command(partitions, "list", role=Role.OWNER, show=show_partitions)
def list_() -> Job:
    """Every daily partition with its size."""
    from fleetctl.admin.partitions import partitions_command  # noqa: PLC0415

    return lambda conn: partitions_command(conn, "list", None, rollups=False)


def show_dropped(r: dict[str, Any], _out: Output) -> str:
    """One line per partition dropped."""
    return "\n".join(f"dropped {n}" for n in r["dropped"]) or "nothing to drop"


@command(partitions, "drop-older-than", role=Role.OWNER, show=show_dropped)
@click.argument("days", type=int, required=False)
@click.option("--rollups", is_flag=True, help="act on the rollups (every level)")
def drop_older_than(days: int | None, rollups: bool) -> Job:
    """Drop the partitions of days older than DAYS (raw history unless --rollups)."""
    if days is None or days < 1:
        raise AnalyticsError("partitions drop-older-than needs DAYS >= 1")
    from fleetctl.admin.partitions import partitions_command  # noqa: PLC0415

    return lambda conn: partitions_command(conn, "drop-older-than", days, rollups=rollups)


def show_compact(r: dict[str, Any], _out: Output) -> str:
    """One line per run."""
    if not r["days"] and not r["lateMerged"]:
        return f"nothing to compact before {r['before']}"
    return (
        f"compacted {len(r['days'])} days ({', '.join(r['days']) or '-'}): "
        f"{r['readings']:,} readings at {r['readingsPerSecond']:,}/s; "
        f"{r['lateMerged']:,} late readings merged"
    )


@command(root, "compact", role=Role.OWNER, show=show_compact)
@click.option(
    "--before",
    help="compact days before this UTC date, YYYY-MM-DD (default: FLEET_COMPACT_AFTER_DAYS "
    "days ago, 2 unless set; every closed day the tier takes when it is 0)",
)
@click.pass_obj
def compact(app: Any, before: str | None) -> Job:
    """Compact closed days into the cold tier; merge late readings into them."""
    from fleetctl.admin.compaction import compact_command  # noqa: PLC0415

    day = _day(before)
    after_days = app.settings().compact_after_days
    return lambda conn: compact_command(conn, day, after_days, progress=True)


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise AnalyticsError(f"--before: not a date (YYYY-MM-DD): {text!r}") from None
