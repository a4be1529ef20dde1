"""fleetctl: AC→DC efficiency per vehicle, fleet reports, anomalies, current state, assignments;
`fleetctl serve` is the same as an HTTP API.

Reports and `serve` read FLEET_ANALYTICS_DATABASE_URL (a fleet_analytics login, or a read
replica), falling back to FLEET_DATABASE_URL. Exit codes: 0 ok, 1 a one-line error (unknown id,
bad window, conflict, database unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from fleetctl.admin.assignment_import import Period, import_periods, parse_csv
from fleetctl.admin.assignments import assign, assignments, unassign
from fleetctl.admin.compaction import compact_command, storage_command
from fleetctl.admin.partitions import partitions_command
from fleetctl.admin.replay import replay
from fleetctl.alerts.service import run_alerts
from fleetctl.alerts.store import list_alerts
from fleetctl.analytics import (
    CURRENT_KINDS,
    SORT_KEYS,
    anomalies,
    chargers,
    current,
    fleet_report,
    vehicle_performance,
)
from fleetctl.analytics.rejects import rejects
from fleetctl.analytics.status import DEFAULT_MIN_AC_KWH
from fleetctl.analytics.window import Window, parse_rfc3339
from fleetctl.api.server import serve
from fleetctl.cli import render
from fleetctl.errors import AnalyticsError
from fleetctl.settings import (
    DEFAULT_API_ADDR,
    ServeConfig,
    ServeConfigError,
    alert_config,
    compact_after_days,
)
from fleetdb.connect import TRANSIENT_ERRORS, connect_analytics
from fleetsvc.logging import configure_logging
from fleetsvc.secrets import mask_url

EXIT_ERROR = 1
EXIT_CONFIG = 2
WINDOWED = ("performance", "fleet", "anomalies", "chargers")  # commands that take a window
READS = (*WINDOWED, "current", "assignments", "rejects", "storage", "serve")  # replica ok
WRITES = ("assign", "unassign")  # a fleet_admin login


def _window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hours", type=float, help="window of H hours ending now (default 24)")
    p.add_argument("--start", help="window start, RFC 3339 (e.g. 2026-11-23T00:00:00Z)")
    p.add_argument("--end", help="window end, RFC 3339, exclusive (default now)")
    p.add_argument(
        "--min-ac-kwh",
        type=float,
        default=DEFAULT_MIN_AC_KWH,
        help="below this AC energy a vehicle is insufficient_data (default %(default)s)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetctl", description=__doc__)
    parser.add_argument("--database-url", help="PostgreSQL URL (default: FLEET_DATABASE_URL)")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("performance", help="one vehicle's efficiency with an hourly breakdown")
    p.add_argument("vehicle_id")
    _window_args(p)
    p = sub.add_parser("fleet", help="every vehicle's efficiency, worst first")
    _window_args(p)
    p.add_argument("--sort", choices=SORT_KEYS, default="efficiency")
    p.add_argument("--limit", type=int, help="show only the first N rows (table output)")
    p.add_argument(
        "--chargers", action="store_true",
        help="also each row's charger diagnosis (fitted efficiency, standby; ~1 s more)",
    )  # fmt: skip
    p = sub.add_parser("anomalies", help="vehicles below an efficiency threshold")
    _window_args(p)
    p.add_argument(
        "--threshold", type=float, default=0.85, help="efficiency ratio in (0, 1.5] (default 0.85)"
    )
    p = sub.add_parser(
        "chargers", help="each charger's fitted conversion efficiency and standby draw, worst first"
    )
    _window_args(p)
    p.add_argument("--limit", type=int, help="show only the first N rows (table output)")
    p = sub.add_parser("alerts", help="open and recent alerts; `alerts run` evaluates and sends")
    p.add_argument(
        "action", nargs="?", choices=("run",),
        help="run: evaluate every FLEET_ALERT_INTERVAL_S and deliver (MQTT, webhooks) until "
        "stopped, as FLEET_ADMIN_DATABASE_URL",
    )  # fmt: skip
    p = sub.add_parser("current", help="newest reading per device, with age and offline flag")
    p.add_argument("kind", choices=CURRENT_KINDS, help="all: every meter and every vehicle")
    p.add_argument("device_id", nargs="?", help="one device (with meters or vehicles)")
    p = sub.add_parser(
        "assign", help="assign a vehicle to a meter from a time on, or import a CSV file"
    )
    p.add_argument("vehicle_id", nargs="?")
    p.add_argument("meter_id", nargs="?")
    p.add_argument("--from", dest="valid_from", help="RFC 3339 (default now)")
    p.add_argument(
        "--file",
        help="CSV with a header vehicle_id,meter_id,valid_from[,valid_to]: imported in one "
        "transaction, all or nothing, errors named by line",
    )
    p = sub.add_parser("unassign", help="end a vehicle's open assignment")
    p.add_argument("vehicle_id")
    p.add_argument("--at", help="RFC 3339 (default now)")
    p = sub.add_parser("assignments", help="a vehicle's meter assignment history")
    p.add_argument("vehicle_id")
    p = sub.add_parser("serve", help="the analytics HTTP API (/v1/...) until SIGTERM")
    p.add_argument(
        "--addr", help=f"host:port to listen on (default: FLEET_API_ADDR or {DEFAULT_API_ADDR})"
    )
    p = sub.add_parser("rejects", help="dead letters: counts by field and rule, newest payloads")
    p.add_argument(
        "action", nargs="?", choices=("replay",),
        help="replay: validate them again with today's rules and store those that now pass",
    )  # fmt: skip
    p.add_argument("--since", help="RFC 3339 (default: 24 h ago)")
    p.add_argument("--field", help="only reasons about this field (e.g. soc, timestamp)")
    p.add_argument("--limit", type=int, default=20, help="newest payloads to show (default 20)")
    p = sub.add_parser(
        "compact", help="compact closed days into the cold tier; merge late readings into them"
    )
    p.add_argument(
        "--before", help="compact days before this UTC date, YYYY-MM-DD (default: "
        "FLEET_COMPACT_AFTER_DAYS ago, 2 unless set)",
    )  # fmt: skip
    sub.add_parser("storage", help="per day and kind: readings, bytes per reading, state")
    p = sub.add_parser("partitions", help="daily partitions: ensure ahead, list, drop old")
    p.add_argument("action", choices=("ensure", "list", "drop-older-than"))
    p.add_argument("days", nargs="?", type=int, help="for drop-older-than: days to keep")
    p.add_argument(
        "--rollups", action="store_true", help="drop-older-than acts on the rollups (every level)"
    )
    return parser


def _window(args: argparse.Namespace) -> Window:
    return Window.parse(hours=args.hours, start=args.start, end=args.end)


async def _execute(
    args: argparse.Namespace, conn: asyncpg.Connection, window: Window | None
) -> Any:
    cmd = args.command
    if cmd in WINDOWED:
        assert window is not None  # parsed by main(), before connecting
        if cmd == "performance":
            return await vehicle_performance(
                conn, args.vehicle_id, window, min_ac_kwh=args.min_ac_kwh
            )
        if cmd == "fleet":
            return await fleet_report(
                conn, window, sort=args.sort, min_ac_kwh=args.min_ac_kwh,
                with_chargers=args.chargers,
            )  # fmt: skip
        if cmd == "chargers":
            return await chargers(conn, window)
        return await anomalies(conn, window, threshold=args.threshold, min_ac_kwh=args.min_ac_kwh)
    if cmd == "current":
        return await current(conn, args.kind, args.device_id)
    if cmd == "assign":
        if args.file:
            return await import_periods(conn, _read_csv(args.file))
        start = parse_rfc3339(args.valid_from, "from") if args.valid_from else None
        return await assign(conn, args.vehicle_id, args.meter_id, start)
    if cmd == "unassign":
        at = parse_rfc3339(args.at, "at") if args.at else None
        return await unassign(conn, args.vehicle_id, at)
    if cmd == "partitions":
        return await partitions_command(conn, args.action, args.days, rollups=args.rollups)
    if cmd == "compact":
        return await compact_command(
            conn, _day(args.before), compact_after_days(), progress=not args.json
        )
    if cmd == "storage":
        return await storage_command(conn)
    if cmd == "alerts":
        return await list_alerts(conn)
    if cmd == "rejects":
        since = (
            parse_rfc3339(args.since, "since") if args.since
            else datetime.now(UTC) - timedelta(hours=24)
        )  # fmt: skip
        if args.action == "replay":
            return await replay(conn, since=since)
        return await rejects(conn, since=since, field=args.field, limit=args.limit)
    return await assignments(conn, args.vehicle_id)


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise AnalyticsError(f"--before: not a date (YYYY-MM-DD): {text!r}") from None


def _read_csv(path: str) -> list[Period]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnalyticsError(f"{path}: {exc}") from exc
    return parse_csv(text)


def _check_assign_args(args: argparse.Namespace) -> None:
    if args.command != "assign":
        return
    if args.file and (args.vehicle_id or args.meter_id or args.valid_from):
        raise AnalyticsError("assign takes either --file or VEHICLE METER [--from], not both")
    if not args.file and not (args.vehicle_id and args.meter_id):
        raise AnalyticsError("assign needs VEHICLE METER, or --file F.csv")


# --- tables ----------------------------------------------------------------------------------


def show_alerts(r: dict[str, Any]) -> str:
    """Open alerts first, then those resolved in the last 24 h."""
    if not r["alerts"]:
        return "no open or recent alerts"
    cells = [(a["state"], a["kind"], a["subject"], render.num(a["lastValue"], 3), a["openedAt"],
              a["resolvedAt"] or "") for a in r["alerts"]]  # fmt: skip
    head = f"{r['open']} open ({', '.join(f'{n} {k}' for k, n in r['openByKind'].items())})"
    return head + "\n" + render.table(("state", "kind", "subject", "value", "opened", "resolved"),
                                      cells, right={3})  # fmt: skip


def show_compact(r: dict[str, Any]) -> str:
    """One line per run."""
    if not r["days"] and not r["lateMerged"]:
        return f"nothing to compact before {r['before']}"
    return (
        f"compacted {len(r['days'])} days ({', '.join(r['days']) or '-'}): "
        f"{r['readings']:,} readings at {r['readingsPerSecond']:,}/s; "
        f"{r['lateMerged']:,} late readings merged"
    )


def show_storage(rows: list[dict[str, Any]]) -> str:
    """A table: one line per day and kind."""
    if not rows:
        return "no days stored"
    cells = [
        (r["day"], r["kind"], r["state"], f"{r['readings']:,}",
         f"{(r['rawBytes'] + r['indexBytes']) / 1e6:,.1f}", f"{r['rollupBytes'] / 1e6:,.1f}",
         render.num(r["bytesPerReading"], 2), render.num(r["rollupBytesPerReading"], 2))
        for r in rows
    ]  # fmt: skip
    head = ("day", "kind", "state", "readings", "MB", "rollup MB", "B/reading", "rollup B/r")
    return render.table(head, cells, right={3, 4, 5, 6, 7})


def _vehicle_rows(rows: list[dict[str, Any]], colour: bool) -> str:
    headers = ("vehicle", "meter", "AC kWh", "DC kWh", "loss kWh", "efficiency", "status",
               "temp avg", "coverage", "shared")  # fmt: skip
    cells = [
        (
            r["vehicleId"],
            ",".join(dict.fromkeys(m["meterId"] for m in r["meters"])) or "-",
            render.num(r["totalAcKwh"]),
            render.num(r["totalDcKwh"]),
            render.num(r["lossKwh"]),
            render.percent(r["efficiencyPercent"]),
            render.status(r["status"], colour),
            render.num(r["batteryTemp"]["avg"], 1),
            render.percent(r["coveragePercent"]["vehicle"]),
            ",".join(r["sharedWith"]) if r["meterShared"] else "",
        )
        for r in rows
    ]
    return render.table(headers, cells, right={2, 3, 4, 5, 7, 8})


def _show_performance(r: dict[str, Any], colour: bool) -> str:
    lines = [
        f"{r['vehicleId']}  {r['window']['start']} → {r['window']['end']}",
        f"  status      {render.status(r['status'], colour)}: {r['message']}",
        f"  efficiency  {render.percent(r['efficiencyPercent'])}  "
        f"(AC {render.num(r['totalAcKwh'])} kWh, DC {render.num(r['totalDcKwh'])} kWh, "
        f"loss {render.num(r['lossKwh'])} kWh)",
        "  meters      "
        + (", ".join(f"{m['meterId']} [{m['from']} → {m['to']})" for m in r["meters"]) or "none"),
    ]
    if r["meterShared"]:
        lines.append(
            f"  shared      meter also fed {', '.join(r['sharedWith'])}: site-level figures "
            f"(this vehicle's own DC: {render.num(r['vehicleDcKwh'])} kWh)"
        )
    for c in r.get("chargers", ()):
        lines.append(
            f"  charger     {c['meterId']}: converter {render.num(c['conversionEfficiency'], 3)}"
            f", standby {render.num(c['standbyW'], 1)} W over {c['fit']['chargingHours']} h of"
            f" charging: {render.status(c['status'], colour)}"
        )
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
    lines.append(
        render.table(
            ("hour", "AC kWh", "DC kWh", "efficiency", "veh n", "meter n"),
            cells,
            right={1, 2, 3, 4, 5},
        )
    )
    return "\n".join(lines)


def _show_fleet(r: dict[str, Any], colour: bool, limit: int | None) -> str:
    t = r["totals"]
    counts = ", ".join(f"{render.status(k, colour)} {v}" for k, v in r["statusCounts"].items() if v)
    rows = r["vehicles"][:limit] if limit else r["vehicles"]
    return "\n".join(
        [
            f"Fleet {r['window']['start']} → {r['window']['end']}: {t['vehicles']} vehicles, "
            f"{t['meters']} meters",
            f"  efficiency {render.percent(t['efficiencyPercent'])} "
            f"(AC {render.num(t['totalAcKwh'])} kWh, DC {render.num(t['totalDcKwh'])} kWh, "
            f"loss {render.num(t['lossKwh'])} kWh)",
            f"  {counts or 'no vehicles'}",
            f"  newest reading {r['newestReadingAt'] or '-'}"
            + (f" ({r['dataAgeSeconds']:,.0f} s ago)" if r["dataAgeSeconds"] is not None else ""),
            "",
            _vehicle_rows(rows, colour),
        ]
        + (
            [f"... {len(r['vehicles']) - len(rows)} more (--limit)"]
            if len(rows) < t["vehicles"]
            else []
        )
    )


def _show_current(r: dict[str, Any]) -> str:
    if r["kind"] == "all":
        one = {k: r[k] for k in ("asOf", "offlineAfterSeconds")}
        return "\n\n".join(
            _show_current({"kind": kind, **one, **r[kind]}) for kind in ("meters", "vehicles")
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
            values = (render.num(d["soc"], 1), render.num(d["kwhDeliveredDc"], 6),
                      render.num(d["batteryTemp"], 1))  # fmt: skip
        cells.append((d["meterId" if meters else "vehicleId"], d["timestamp"], *values, age, state))
    numeric = set(range(2, len(headers) - 1))
    summary = (
        f"{r['count']} {r['kind']}, {r['offline']} offline "
        f"(no reading for > {r['offlineAfterSeconds']} s)"
    )
    return render.table(headers, cells, right=numeric) + "\n" + summary


def _show_rejects(r: dict[str, Any]) -> str:
    counts = [(c["kind"], c["field"], c["rule"][:70], f"{c['count']:,}", c["newest"])
              for c in r["counts"]]  # fmt: skip
    lines = [
        f"{r['total']:,} rejected messages since {r['since']}",
        render.table(("kind", "field", "rule", "count", "newest"), counts, right={3}),
    ]
    if r["newest"]:
        lines += ["", "newest:"]
        lines += [f"  {m['receivedAt']}  {m['topic']}  {m['reason']}\n    {m['payload'][:200]!r}"
                  for m in r["newest"]]  # fmt: skip
    return "\n".join(lines)


def _show_chargers(r: dict[str, Any], limit: int | None) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in r["statusCounts"].items() if n)
    head = (f"{r['count']} chargers ({counts}), {r['window']['start']} → {r['window']['end']}\n"
            f"fit: {r['model']}")  # fmt: skip
    cells = [
        (c["meterId"], c["status"], render.num(c["conversionEfficiency"], 3),
         render.num(c["standbyW"], 1), str(c["fit"]["chargingHours"]),
         render.num(c["fit"]["rmseWh"], 2), render.num(c["billed"]["efficiency"], 3),
         ", ".join(c["vehicles"]))
        for c in r["chargers"][:limit]
    ]  # fmt: skip
    cols = ("meter", "status", "eta", "standby W", "charging h", "rmse Wh", "billed", "vehicles")
    return head + "\n" + render.table(cols, cells, right={2, 3, 4, 5, 6})


def _show(args: argparse.Namespace, result: Any, colour: bool) -> str:
    cmd = args.command
    if cmd == "performance":
        return _show_performance(result, colour)
    if cmd == "fleet":
        return _show_fleet(result, colour, args.limit)
    if cmd == "anomalies":
        head = (
            f"{result['count']} vehicles below {result['threshold'] * 100:.1f} % "
            f"({result['window']['start']} → {result['window']['end']})"
        )
        out = [head, _vehicle_rows(result["vehicles"], colour)]
        if result["meterErrors"]:
            out += ["", "Impossible efficiency (> 100 %): check meter or assignment",
                    _vehicle_rows(result["meterErrors"], colour)]  # fmt: skip
        return "\n".join(out)
    if cmd == "chargers":
        return _show_chargers(result, args.limit)
    if cmd == "alerts":
        return show_alerts(result)
    if cmd == "current":
        return _show_current(result)
    if cmd == "assign" and args.file:
        return f"imported {result['imported']} assignments of {result['vehicles']} vehicles"
    if cmd == "unassign":
        return f"{result['vehicleId']} unassigned from {result['meterId']} at {result['validTo']}"
    if cmd == "assign":
        verb = "assigned" if result["changed"] else "already assigned"
        return f"{result['vehicleId']} {verb} to {result['meterId']} from {result['validFrom']}"
    if cmd == "rejects" and args.action == "replay":
        return (
            f"replayed {result['replayed']:,} rejects: {result['stored']:,} stored, "
            f"{result['alreadyStored']:,} already stored, {result['stillRejected']:,} still "
            "rejected"
        )
    if cmd == "rejects":
        return _show_rejects(result)
    if cmd == "compact":
        return show_compact(result)
    if cmd == "storage":
        return show_storage(result)
    if cmd == "partitions":
        if args.action == "ensure":
            return f"{result['created']} partition tables created"
        if args.action == "drop-older-than":
            return "\n".join(f"dropped {n}" for n in result["dropped"]) or "nothing to drop"
        rows = [(p["table"], p["day"], f"{p['bytes'] / 1e6:,.1f}", f"{p['rowsEstimate']:,}")
                for p in result]  # fmt: skip
        return render.table(("table", "day", "MB", "rows (est.)"), rows, right={2, 3})
    cells = [(a["meterId"], a["validFrom"], a["validTo"] or "(open)") for a in result]
    return render.table(("meter", "from", "to"), cells, right=set()) if cells else "no assignments"


async def _main(args: argparse.Namespace, url: str, window: Window | None) -> Any:
    if args.command == "alerts" and args.action == "run":
        config = alert_config(os.environ)
        configure_logging(
            os.environ.get("FLEET_LOG_FORMAT", "auto"),  # type: ignore[arg-type]
            os.environ.get("FLEET_LOG_LEVEL", "info"),
        )
        await run_alerts(url, config, os.environ.get("FLEET_ALERT_MQTT_URL"))
        return None
    conn = await connect_analytics(url)
    try:
        return await _execute(args, conn, window)
    finally:
        await conn.close()


def _database_url(args: argparse.Namespace) -> str | None:
    if args.database_url:
        return str(args.database_url)
    env = os.environ
    if (
        args.command == "rejects"
        and args.action == "replay"
        and env.get("FLEET_ADMIN_DATABASE_URL")
    ):
        return env["FLEET_ADMIN_DATABASE_URL"]  # it writes readings
    if args.command == "alerts" and args.action == "run" and env.get("FLEET_ADMIN_DATABASE_URL"):
        return env["FLEET_ADMIN_DATABASE_URL"]  # it writes the alert state
    if (args.command in READS or args.command == "alerts") and env.get(
        "FLEET_ANALYTICS_DATABASE_URL"
    ):
        return env["FLEET_ANALYTICS_DATABASE_URL"]
    if args.command in WRITES and env.get("FLEET_ADMIN_DATABASE_URL"):
        return env["FLEET_ADMIN_DATABASE_URL"]
    return env.get("FLEET_DATABASE_URL")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fleetctl` console script."""
    args = _parser().parse_args(argv)
    url = _database_url(args)
    if not url:
        print(
            "fleetctl: no database: set FLEET_DATABASE_URL or pass --database-url", file=sys.stderr
        )
        return EXIT_ERROR
    if args.command == "serve":
        try:
            config = ServeConfig.load(os.environ, addr=args.addr, database_url=url)
        except ServeConfigError as exc:
            print(f"fleetctl serve: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        configure_logging(
            os.environ.get("FLEET_LOG_FORMAT", "auto"),  # type: ignore[arg-type]
            os.environ.get("FLEET_LOG_LEVEL", "info"),
        )
        return asyncio.run(serve(config))
    try:
        # A bad window or bad arguments fail before connecting.
        _check_assign_args(args)
        window = _window(args) if args.command in WINDOWED else None
        result = asyncio.run(_main(args, url, window))
    except AnalyticsError as exc:
        print(f"fleetctl: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except TRANSIENT_ERRORS as exc:
        print(f"fleetctl: database unreachable at {mask_url(url)}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except asyncpg.PostgresError as exc:
        print(f"fleetctl: database error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_show(args, result, render.use_colour(sys.stdout.isatty())))
    return 0
