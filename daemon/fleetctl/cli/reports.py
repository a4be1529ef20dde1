"""The reports: one vehicle, the fleet, anomalies, chargers, current state, storage. Each reads
as the analytics login (a fleet_analytics role or a read replica)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

from fleetctl.cli import render
from fleetctl.cli.app import Job, Output, command, root
from fleetctl.cli.options import window_options
from fleetctl.params import CHARGER_MAX_INTERVAL, CURRENT_KINDS, SORT_KEYS
from fleetctl.roles import Role

if TYPE_CHECKING:
    from fleetctl.analytics.window import Window

_LIMIT_HELP = "only the first N rows (the table and --json)"


def _first(limit: int | None) -> int | None:
    if limit is not None and limit < 0:
        raise click.BadParameter("must be >= 0", param_hint="--limit")
    return limit


def _meters(r: dict[str, Any]) -> str:
    return ",".join(dict.fromkeys(m["meterId"] for m in r["meters"])) or "-"


def _vehicle_columns(colour: bool) -> tuple[render.Column, ...]:
    return (
        render.Column("vehicle", lambda r: r["vehicleId"]),
        render.Column("meter", _meters),
        render.Column("AC kWh", lambda r: render.num(r["totalAcKwh"]), right=True),
        render.Column("DC kWh", lambda r: render.num(r["totalDcKwh"]), right=True),
        render.Column("loss kWh", lambda r: render.num(r["lossKwh"]), right=True, wide=True),
        render.Column("eff.", lambda r: render.percent(r["efficiencyPercent"]), right=True),
        render.Column("status", lambda r: render.status(r["status"], colour)),
        render.Column(
            "temp avg", lambda r: render.num(r["batteryTemp"]["avg"], 1), right=True, wide=True
        ),
        render.Column(
            "coverage",
            lambda r: render.percent(r["coveragePercent"]["vehicle"]),
            right=True,
            wide=True,
        ),
        render.Column(
            "shared", lambda r: ",".join(r["sharedWith"]) if r["meterShared"] else "", wide=True
        ),
    )


def show_vehicle_rows(rows: list[dict[str, Any]], out: Output) -> str:
    """One line per vehicle: the fleet report's and anomalies' table (-o wide: loss,
    temperature, coverage, shared meters)."""
    return render.columns(rows, _vehicle_columns(out.colour), wide=out.wide)


def show_performance(r: dict[str, Any], out: Output) -> str:
    """One vehicle: the verdict, its meters and chargers, battery, coverage, then the hours."""
    colour = out.colour
    lines = [
        f"{r['vehicleId']}  {r['window']['start']} → {r['window']['end']}",
        f"  status      {render.status(r['status'], colour)}",
        f"              {r['message']}",
        f"  efficiency  {render.percent(r['efficiencyPercent'])}  "
        f"(AC {render.num(r['totalAcKwh'])} kWh, DC {render.num(r['totalDcKwh'])} kWh, "
        f"loss {render.num(r['lossKwh'])} kWh)",
        "  meters      "
        + (
            "\n              ".join(
                f"{m['meterId']} [{m['from']} → {m['to']})" for m in r["meters"]
            )
            or "none"
        ),
    ]
    if r["meterShared"]:
        lines += [
            f"  shared      meter also fed {', '.join(r['sharedWith'])}: site-level figures",
            f"              (this vehicle's own DC: {render.num(r['vehicleDcKwh'])} kWh)",
        ]
    for c in r.get("chargers", ()):
        lines += [
            f"  charger     {c['meterId']}: {render.status(c['status'], colour)}"
            + (f" ({c['reason']})" if c.get("reason") else ""),
            f"              converter {render.num(c['conversionEfficiency'], 3)} "
            f"(95 %: {_ci(c, 'conversionEfficiency', 3)}),",
            f"              standby {render.num(c['standbyW'], 1)} W "
            f"(95 %: {_ci(c, 'standbyW', 1)})",
            f"              over {c['fit']['chargingHours']} h of charging"
            + (f"; {c['boundActive']} at its bound" if c.get("boundActive") else ""),
        ]
    bt, soc = r["batteryTemp"], r["soc"]
    lines += [
        f"  battery     temp avg {render.num(bt['avg'], 1)} °C (min {render.num(bt['min'], 1)},"
        f" max {render.num(bt['max'], 1)}); SoC {render.num(soc['first'], 1)} % → "
        f"{render.num(soc['last'], 1)} %",
        f"  readings    vehicle {r['readings']['vehicle']}/{r['expectedReadings']['vehicle']} "
        f"({render.percent(r['coveragePercent']['vehicle'])}), meter "
        f"{r['readings']['meter']}/{r['expectedReadings']['meter']} "
        f"({render.percent(r['coveragePercent']['meter'])})",
        "",
    ]
    cells = [
        (
            h["hour"],
            render.num(h["acKwh"]),
            render.num(h["dcKwh"]),
            render.percent(None if h["efficiency"] is None else h["efficiency"] * 100),
            str(h["readings"]["vehicle"]),
            str(h["readings"]["meter"]),
        )
        for h in r["hourly"]
    ]
    headers = ("hour", "AC kWh", "DC kWh", "efficiency", "veh n", "meter n")
    lines.append(render.table(headers, cells, right={1, 2, 3, 4, 5}))
    return "\n".join(lines)


@command(root, "performance", role=Role.ANALYTICS, show=show_performance)
@click.argument("vehicle_id")
@window_options
def performance(vehicle_id: str, window: Window, min_ac_kwh: float) -> Job:
    """One vehicle's efficiency with an hourly breakdown."""
    from fleetctl.analytics import vehicle_performance  # noqa: PLC0415

    return lambda conn: vehicle_performance(conn, vehicle_id, window, min_ac_kwh=min_ac_kwh)


def show_fleet(r: dict[str, Any], out: Output) -> str:
    """Fleet totals, counts per status, then the vehicles (as many as --limit kept)."""
    t = r["totals"]
    counts = ", ".join(
        f"{render.status(k, out.colour)} {v}" for k, v in r["statusCounts"].items() if v
    )
    age = r["dataAgeSeconds"]
    kwh = 3 if out.wide else 1  # fleet totals run to six digits before the point
    lines = [
        f"Fleet {r['window']['start']} → {r['window']['end']}: {t['vehicles']} vehicles, "
        f"{t['meters']} meters",
        f"  efficiency {render.percent(t['efficiencyPercent'])} "
        f"(AC {render.num(t['totalAcKwh'], kwh)} kWh, DC {render.num(t['totalDcKwh'], kwh)} kWh, "
        f"loss {render.num(t['lossKwh'], kwh)} kWh)",
        f"  {counts or 'no vehicles'}",
        f"  newest reading {r['newestReadingAt'] or '-'}"
        + (f" ({age:,.0f} s ago)" if age is not None else ""),
        "",
        show_vehicle_rows(r["vehicles"], out),
    ]
    if len(r["vehicles"]) < t["vehicles"]:
        lines.append(f"... {t['vehicles'] - len(r['vehicles'])} more (--limit)")
    with_charger = [v for v in r["vehicles"] if v.get("charger")]
    if with_charger:
        lines += [
            "",
            "Their chargers (the meter each used last): fitted efficiency and standby, 95 %",
            render.columns(with_charger, _ROW_CHARGER_COLUMNS, wide=out.wide),
        ]
    return "\n".join(lines)


@command(root, "fleet", role=Role.ANALYTICS, show=show_fleet)
@window_options
@click.option("--sort", type=click.Choice(SORT_KEYS), default="efficiency", show_default=True)
@click.option("--limit", type=int, help=_LIMIT_HELP)
@click.option(
    "--chargers",
    "with_chargers",
    is_flag=True,
    help="also each row's charger diagnosis (fitted efficiency, standby; ~1 s more)",
)
def fleet(
    window: Window, min_ac_kwh: float, sort: str, limit: int | None, with_chargers: bool
) -> Job:
    """Every vehicle's efficiency, worst first."""
    from fleetctl.analytics import fleet_report  # noqa: PLC0415

    first = _first(limit)

    async def job(conn: Any) -> Any:
        r = await fleet_report(
            conn, window, sort=sort, min_ac_kwh=min_ac_kwh, with_chargers=with_chargers
        )
        r["vehicles"] = r["vehicles"][:first]  # the totals still count every vehicle
        return r

    return job


def show_anomalies(r: dict[str, Any], out: Output) -> str:
    """Vehicles below the threshold, then those whose figures are impossible."""
    head = (
        f"{r['count']} vehicles below {r['threshold'] * 100:.1f} % "
        f"({r['window']['start']} → {r['window']['end']})"
    )
    lines = [head, show_vehicle_rows(r["vehicles"], out)]
    if r["meterErrors"]:
        lines += [
            "",
            "Impossible efficiency (> 100 %): check meter or assignment",
            show_vehicle_rows(r["meterErrors"], out),
        ]
    return "\n".join(lines)


@command(root, "anomalies", role=Role.ANALYTICS, show=show_anomalies)
@window_options
@click.option(
    "--threshold", type=float, default=0.85, show_default=True, help="efficiency ratio in (0, 1.5]"
)
def anomalies(window: Window, min_ac_kwh: float, threshold: float) -> Job:
    """Vehicles below an efficiency threshold."""
    from fleetctl.analytics import anomalies as report  # noqa: PLC0415

    return lambda conn: report(conn, window, threshold=threshold, min_ac_kwh=min_ac_kwh)


def _ci(c: dict[str, Any], key: str, digits: int) -> str:
    """A charger's 95 % interval of `key` as 'low-high', rounded outwards; '-' without one."""
    ci = c.get("ci95")
    if not ci:
        return "-"
    lo, hi = ci[key]
    scale = 10**digits
    return (
        f"{math.floor(lo * scale) / scale:,.{digits}f}-{math.ceil(hi * scale) / scale:,.{digits}f}"
    )


_CHARGER_COLUMNS = (
    render.Column("meter", lambda c: c["meterId"]),
    render.Column("status", lambda c: c["status"]),
    render.Column("eta", lambda c: render.num(c["conversionEfficiency"], 3), right=True),
    render.Column("eta 95 %", lambda c: _ci(c, "conversionEfficiency", 3), right=True),
    render.Column("standby W", lambda c: render.num(c["standbyW"], 1), right=True),
    render.Column("standby 95 %", lambda c: _ci(c, "standbyW", 1), right=True),
    render.Column("reason", lambda c: c.get("reason") or "", wide=True),
    render.Column("bound", lambda c: c.get("boundActive") or "", wide=True),
    render.Column("charging h", lambda c: str(c["fit"]["chargingHours"]), right=True, wide=True),
    render.Column("rmse Wh", lambda c: render.num(c["fit"]["rmseWh"], 2), right=True, wide=True),
    render.Column(
        "billed", lambda c: render.num(c["billed"]["efficiency"], 3), right=True, wide=True
    ),
    render.Column("vehicles", lambda c: ", ".join(c["vehicles"]), wide=True),
)
_ROW_CHARGER_COLUMNS = (
    render.Column("vehicle", lambda r: r["vehicleId"]),
    render.Column("charger", lambda r: r["charger"]["meterId"]),
    render.Column("status", lambda r: r["charger"]["status"]),
    render.Column(
        "eta", lambda r: render.num(r["charger"]["conversionEfficiency"], 3), right=True, wide=True
    ),
    render.Column("eta 95 %", lambda r: _ci(r["charger"], "conversionEfficiency", 3), right=True),
    render.Column(
        "standby W", lambda r: render.num(r["charger"]["standbyW"], 1), right=True, wide=True
    ),
    render.Column("standby 95 %", lambda r: _ci(r["charger"], "standbyW", 1), right=True),
    render.Column("reason", lambda r: r["charger"].get("reason") or "", wide=True),
)


def show_chargers(r: dict[str, Any], out: Output) -> str:
    """Counts per status and the fit, then one line per charger with its 95 % intervals (-o
    wide: the reason of insufficient_data, the bound, charging hours, fit error, billed ratio
    and the vehicles it fed)."""
    counts = ", ".join(f"{n} {s}" for s, n in r["statusCounts"].items() if n)
    head = (
        f"{r['count']} chargers, {r['window']['start']} → {r['window']['end']}\n"
        f"  {counts or 'none'}\n"
        f"  fit: {render.clip(r['model'], 73, out.wide)}"
    )
    return head + "\n" + render.columns(r["chargers"], _CHARGER_COLUMNS, wide=out.wide)


@command(root, "chargers", role=Role.ANALYTICS, show=show_chargers)
@window_options
@click.option("--limit", type=int, help=_LIMIT_HELP)
@click.option(
    "--max-interval",
    type=click.FloatRange(0, 1),
    default=CHARGER_MAX_INTERVAL,
    show_default=True,
    help="a 95 % interval of eta this narrow decides a status even across a band's edge",
)
def chargers(window: Window, min_ac_kwh: float, limit: int | None, max_interval: float) -> Job:
    """Each charger's fitted conversion efficiency and standby draw, worst first."""
    from fleetctl.analytics import chargers as report  # noqa: PLC0415

    first = _first(limit)

    async def job(conn: Any) -> Any:
        r = await report(conn, window, max_interval=max_interval)
        r["chargers"] = r["chargers"][:first]  # the counts still cover every charger
        return r

    return job


def show_current(r: dict[str, Any], out: Output) -> str:
    """Newest reading per device, with its age and state, then the count offline."""
    if r["kind"] == "all":
        one = {k: r[k] for k in ("asOf", "offlineAfterSeconds")}
        return "\n\n".join(
            show_current({"kind": kind, **one, **r[kind]}, out) for kind in ("meters", "vehicles")
        )
    meters = r["kind"] == "meters"
    headers = (
        ("meter", "timestamp", "kWh AC", "voltage", "age s", "state")
        if meters
        else ("vehicle", "timestamp", "SoC %", "kWh DC", "temp °C", "age s", "state")
    )
    cells: list[tuple[str, ...]] = []
    for d in r["devices"]:
        state = "OFFLINE" if d["offline"] else "online"
        age = render.num(d["lastSeenSeconds"], 0)
        values: tuple[str, ...]
        if meters:
            values = (render.num(d["kwhConsumedAc"], 6), render.num(d["voltage"], 1))
        else:
            values = (
                render.num(d["soc"], 1),
                render.num(d["kwhDeliveredDc"], 6),
                render.num(d["batteryTemp"], 1),
            )
        cells.append((d["meterId" if meters else "vehicleId"], d["timestamp"], *values, age, state))
    numeric = set(range(2, len(headers) - 1))
    summary = (
        f"{r['count']} {r['kind']}, {r['offline']} offline "
        f"(no reading for > {r['offlineAfterSeconds']} s)"
    )
    return render.table(headers, cells, right=numeric) + "\n" + summary


@command(root, "current", role=Role.ANALYTICS, show=show_current)
@click.argument("kind", type=click.Choice(CURRENT_KINDS))
@click.argument("device_id", required=False)
def current(kind: str, device_id: str | None) -> Job:
    """Newest reading per device, with age and offline flag (KIND all: every meter and every
    vehicle; DEVICE_ID: one device, with meters or vehicles)."""
    from fleetctl.analytics import current as report  # noqa: PLC0415

    return lambda conn: report(conn, kind, device_id)  # type: ignore[arg-type]  # a Choice


def show_storage(rows: list[dict[str, Any]], _out: Output) -> str:
    """A table: one line per day and kind."""
    if not rows:
        return "no days stored"
    cells = [
        (
            r["day"],
            r["kind"],
            r["state"],
            f"{r['readings']:,}",
            f"{(r['rawBytes'] + r['indexBytes']) / 1e6:,.1f}",
            f"{r['rollupBytes'] / 1e6:,.1f}",
            render.num(r["bytesPerReading"], 2),
            render.num(r["rollupBytesPerReading"], 2),
        )
        for r in rows
    ]
    head = ("day", "kind", "state", "readings", "MB", "rollup MB", "B/reading", "rollup B/r")
    return render.table(head, cells, right={3, 4, 5, 6, 7})


@command(root, "storage", role=Role.ANALYTICS, show=show_storage)
def storage() -> Job:
    """Per day and kind: readings, bytes per reading, state (open or compacted)."""
    from fleetctl.admin.compaction import storage_command  # noqa: PLC0415

    return storage_command
