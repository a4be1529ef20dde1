"""Which meter feeds which vehicle: `fleetctl assignments list|add|end` (also `fleetctl assign`
and `fleetctl unassign`). Writes need the admin login (FLEET_ADMIN_DATABASE_URL)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fleetctl.cli import render
from fleetctl.cli.app import Job, NounGroup, Output, command, root
from fleetctl.cli.options import instant, time_window_options
from fleetctl.errors import AnalyticsError
from fleetctl.roles import Role

if TYPE_CHECKING:
    import asyncpg

    from fleetctl.analytics.window import Window


@root.group("assignments", cls=NounGroup, default="list")
def assignments() -> None:
    """A vehicle's meter assignment history (`assignments add|end`: assign, unassign)."""


def show_history(result: list[dict[str, Any]], _out: Output) -> str:
    """One line per assignment."""
    cells = [(a["meterId"], a["validFrom"], a["validTo"] or "(open)") for a in result]
    return render.table(("meter", "from", "to"), cells, right=set()) if cells else "no assignments"


@command(assignments, "list", role=Role.ANALYTICS, show=show_history)
@click.argument("vehicle_id")
def list_(vehicle_id: str) -> Job:
    """A vehicle's meter assignment history."""
    from fleetctl.admin.assignments import assignments as history  # noqa: PLC0415

    return lambda conn: history(conn, vehicle_id)


def show_assign(r: dict[str, Any], _out: Output) -> str:
    """One line: the assignment made, or the file imported (and what was there already)."""
    if "imported" in r:
        if not r["imported"] and r["unchanged"]:
            return f"nothing imported: all {r['unchanged']} assignments already present (unchanged)"
        unchanged = f"; {r['unchanged']} unchanged (already present)" if r["unchanged"] else ""
        return f"imported {r['imported']} assignments of {r['vehicles']} vehicles{unchanged}"
    verb = "assigned" if r["changed"] else "already assigned (unchanged)"
    return f"{r['vehicleId']} {verb} to {r['meterId']} from {r['validFrom']}"


def _warn_never_seen(unseen: dict[str, list[str]]) -> None:
    """One warning line per kind of id that never reported (the first ten named)."""
    for kind, ids in unseen.items():
        if ids:
            shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
            click.echo(
                f"fleetctl: warning: {len(ids)} {kind[:-1] if len(ids) == 1 else kind} never "
                f"reported (no reading stored): {shown}; --strict refuses them",
                err=True,
            )


def _warning(job: Callable[[asyncpg.Connection], Awaitable[dict[str, Any]]]) -> Job:
    async def run(conn: asyncpg.Connection) -> dict[str, Any]:
        result = await job(conn)
        _warn_never_seen(result["neverSeen"])
        return result

    return run


@command(root, "assign", role=Role.ADMIN, show=show_assign, also=((assignments, "add"),))
@click.argument("vehicle_id", required=False)
@click.argument("meter_id", required=False)
@click.option("--from", "valid_from", help="RFC 3339 (default now)")
@click.option(
    "--file",
    help="CSV with a header vehicle_id,meter_id,valid_from[,valid_to]: imported in one "
    "transaction, all or nothing, errors named by line; lines already stored are unchanged",
)
@click.option(
    "--strict",
    is_flag=True,
    help="refuse ids that never reported (without it: a warning, and they are assigned)",
)
def assign(
    vehicle_id: str | None,
    meter_id: str | None,
    valid_from: str | None,
    file: str | None,
    strict: bool,
) -> Job:
    """Assign a vehicle to a meter from a time on, or import a CSV file; the same assignment
    again changes nothing. Ids that never reported are named in a warning (refused with
    --strict)."""
    if file and (vehicle_id or meter_id or valid_from):
        raise AnalyticsError("assign takes either --file or VEHICLE METER [--from], not both")
    if file:
        from fleetctl.admin.assignment_import import import_periods, parse_csv  # noqa: PLC0415

        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AnalyticsError(f"{file}: {exc}") from exc
        periods = parse_csv(text)
        return _warning(lambda conn: import_periods(conn, periods, strict=strict))
    if not (vehicle_id and meter_id):
        raise AnalyticsError("assign needs VEHICLE METER, or --file F.csv")
    from fleetctl.admin.assignments import assign as run  # noqa: PLC0415

    start = instant(valid_from, "from")
    return _warning(lambda conn: run(conn, vehicle_id, meter_id, start, strict=strict))


def show_unassign(r: dict[str, Any], _out: Output) -> str:
    """One line: the assignment ended."""
    return f"{r['vehicleId']} unassigned from {r['meterId']} at {r['validTo']}"


@command(root, "unassign", role=Role.ADMIN, show=show_unassign, also=((assignments, "end"),))
@click.argument("vehicle_id")
@click.option("--at", help="RFC 3339 (default now)")
def unassign(vehicle_id: str, at: str | None) -> Job:
    """End a vehicle's open assignment."""
    from fleetctl.admin.assignments import unassign as run  # noqa: PLC0415

    end = instant(at, "at")
    return lambda conn: run(conn, vehicle_id, end)


def _side(s: dict[str, Any] | None) -> str:
    if s is None:
        return "-"
    err = s["fit"]["relativeError"]
    return f"{s['chargingHoursWithoutAc']}/{s['chargingHours']} h, err {render.num(err, 2)}"


_CHECK_COLUMNS = (
    render.Column("vehicle", lambda r: r["vehicleId"]),
    render.Column("status", lambda r: r["status"]),
    render.Column("meter", lambda r: r["meterId"] or "-"),
    render.Column("suggested", lambda r: r["suggestedMeterId"] or "-"),
    render.Column("no AC", lambda r: _side(r["assigned"])),
    render.Column("AC no DC", lambda r: str(r["assigned"]["acHoursWithoutDc"]), wide=True),
    render.Column("best", lambda r: (r["best"] or {}).get("meterId") or "-", wide=True),
    render.Column("best fit", lambda r: _side(r["best"]), wide=True),
)


def show_check(r: dict[str, Any], out: Output) -> str:
    """Counts per verdict, then the vehicles listed: charging hours without AC at the assigned
    meter out of the charging hours, and the fit's relative error (-o wide: the best meter's)."""
    counts = ", ".join(f"{n} {s}" for s, n in r["statusCounts"].items() if n)
    head = (
        f"{r['count']} vehicles, {r['window']['start']} → {r['window']['end']}\n"
        f"  {counts or 'none'}"
    )
    if not r["vehicles"]:
        return head + "\n  no assignment looks wrong"
    return head + "\n" + render.columns(r["vehicles"], _CHECK_COLUMNS, wide=out.wide)


@command(assignments, "check", role=Role.ANALYTICS, show=show_check)
@time_window_options
@click.option("--all", "every", is_flag=True, help="every vehicle, not only the suspect ones")
@click.option("--limit", type=int, help="only the first N rows (the table and --json)")
def check(window: Window, every: bool, limit: int | None) -> Job:
    """Vehicles whose charging hours do not line up with their meter's AC, and the meter that
    fits best (read-only)."""
    if limit is not None and limit < 0:
        raise click.BadParameter("must be >= 0", param_hint="--limit")
    from fleetctl.analytics.assignment_check import assignment_check  # noqa: PLC0415

    async def job(conn: Any) -> Any:
        r = await assignment_check(conn, window, every=every)
        r["vehicles"] = r["vehicles"][:limit]  # the counts still cover every vehicle
        return r

    return job
