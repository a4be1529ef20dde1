"""The bench's assignment check section: precision and recall of `suspect` against the
simulator's wrong assignments (1 % of the vehicles), whether the suggested meter is the one
they really charge at, and the check's runtime at fleet size (10,000 vehicles x 10,000 meters).

In memory (always): the fleet's hourly sums as the rollups hold them
(fleetsim.bench.diagnosis.simulate), 24 h, judged by the same code the report runs
(build_grid + judge); the time is the check's own, without reading the database.
On the query dataset (stage 8, when it runs): the whole report through PostgreSQL on the 24 h
ending at the data's end, with 1 % of the assignments rewritten as --wrong-assignments would
write them, inside a transaction that is rolled back (the cached dataset stays as built).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from fleetctl.analytics.assignment_check import assignment_check, build_grid, judge
from fleetctl.analytics.hourly import Hourly
from fleetctl.analytics.window import Window
from fleetsim.assignment_eval import score
from fleetsim.bench.diagnosis import HourlySums, simulate
from fleetsim.model import Fleet, FleetConfig

START = datetime(2026, 11, 2, tzinfo=UTC)
HOURS = 24
WRONG_SHARE = 0.01


def _hourly(ids: list[str], kwh: Any, n: Any) -> Hourly:
    import numpy as np  # noqa: PLC0415 (numpy comes with fleetctl.analytics)

    hours, devices = np.nonzero(n)
    return Hourly(
        [ids[d] for d in devices.tolist()],
        int(START.timestamp()) + hours.astype(np.int64) * 3600,
        kwh[hours, devices],
        n[hours, devices],
    )


def _judge(fleet: Fleet, sums: HourlySums, h0: int, hours: int) -> tuple[float, dict[str, Any]]:
    """(seconds, score) of the check on hours [h0, h0 + hours) of the simulated span."""
    sl = slice(h0, h0 + hours)
    begin = START + timedelta(hours=h0)
    spans = [
        {
            "vehicle_id": vid,
            "meter_id": fleet.meter_ids[fleet.registered_meter[j]],
            "s": begin,
            "e": begin + timedelta(hours=hours),
        }
        for j, vid in enumerate(fleet.vehicle_ids)
    ]
    meters = _hourly(fleet.meter_ids, sums.meter_kwh[sl], sums.meter_n[sl])
    vehicles = _hourly(fleet.vehicle_ids, sums.vehicle_kwh[sl], sums.vehicle_n[sl])
    meters.hour_s += h0 * 3600
    vehicles.hour_s += h0 * 3600
    t0 = time.perf_counter()
    rows = judge(build_grid(meters, vehicles, spans, fleet.config.interval_s))
    took = time.perf_counter() - t0
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return took, score({"count": len(rows), "statusCounts": counts, "vehicles": rows}, fleet)


def _simulated(n: int, hours: int, say: Any) -> tuple[Fleet, HourlySums]:
    cfg = FleetConfig(meters=n, vehicles=n, seed=7, wrong_assignments=round(n * WRONG_SHARE))
    t0 = time.perf_counter()
    fleet = Fleet(cfg)
    sums = simulate(fleet, hours, 0.0, cfg.seed)
    say(
        f"assignment check: {n:,} x {n:,} simulated for {hours} h "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    return Fleet(cfg), sums


def assignment_stage(*, quick: bool, say: Any = print) -> dict[str, Any]:
    """24 h of a 1:1 fleet (10,000; quick: 1,000) with 1 % of the vehicles mis-assigned, then
    tiled 3 h, 24 h and 7 d windows of a smaller one (quick: 3 h and 24 h over 2 days)."""
    n = 1_000 if quick else 10_000
    fleet, sums = _simulated(n, HOURS, say)
    took, got = _judge(fleet, sums, 0, HOURS)
    out: dict[str, Any] = {"fleet": n, "hours": HOURS, "checkS": took, **got, "windows": {}}
    small, days = (500, 2) if quick else (2_000, 8)
    fleet, sums = _simulated(small, days * 24, say)
    for hours in (3, 24) if quick else (3, 24, 168):
        tiles = [_judge(fleet, sums, h0, hours)[1] for h0 in range(0, days * 24 - hours + 1, hours)]
        found = sum(t["found"] for t in tiles)
        flagged = sum(t["flagged"] for t in tiles)
        wrong = sum(t["wrong"] for t in tiles)
        out["windows"][f"{hours}h"] = {
            "fleet": small,
            "windows": len(tiles),
            "wrong": wrong,
            "flagged": flagged,
            "found": found,
            "suggestedRight": sum(t["suggestedRight"] for t in tiles),
            "precision": found / flagged if flagged else 1.0,
            "recall": found / wrong if wrong else 1.0,
        }
    return out


async def check_on_database(conn: asyncpg.Connection, window: Window) -> dict[str, Any]:
    """The report through PostgreSQL on the query dataset (FleetConfig()'s fleet), with 1 % of
    the open assignments rewritten to another meter in a transaction that is rolled back."""
    base = FleetConfig()
    wrong = Fleet(FleetConfig(wrong_assignments=round(base.vehicles * WRONG_SHARE)))
    moved = [
        (v, wrong.meter_ids[reg])
        for v, reg, real in zip(
            wrong.vehicle_ids, wrong.registered_meter, wrong.vehicle_meter, strict=True
        )
        if reg != real
    ]
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.executemany(
            "UPDATE vehicle_meter_assignments SET meter_id = $2"
            " WHERE vehicle_id = $1 AND valid_to IS NULL",
            moved,
        )
        t0 = time.perf_counter()
        report = await assignment_check(conn, window)
        took = time.perf_counter() - t0
    finally:
        await tx.rollback()
    return {"checkS": took, **score(report, wrong)}


def assignment_lines(a: dict[str, Any], db: dict[str, Any] | None) -> list[str]:
    """The bench table's section for the assignment check."""
    lines = [
        f"13 assignment check, {a['hours']} h, {a['fleet']:,} x {a['fleet']:,}, "
        f"{a['wrong']} vehicles mis-assigned (1 %):",
        f"{'    in memory: precision / recall / suggested meter right':<58}"
        f"{a['precision']:>7.1%} / {a['recall']:.1%} / {a['suggestedRight']}/{a['found']}",
        f"{'    in memory: the check itself':<58}{a['checkS']:>10.1f} s",
    ]
    if db:
        lines += [
            f"{'    query dataset: precision / recall / suggested right':<58}"
            f"{db['precision']:>7.1%} / {db['recall']:.1%} / {db['suggestedRight']}/{db['found']}",
            f"{'    query dataset: the whole report (PostgreSQL + check)':<58}"
            f"{db['checkS']:>10.1f} s",
        ]
    for span, w in a.get("windows", {}).items():
        name = f"    {span} windows x {w['windows']} ({w['fleet']:,}): precision / recall"
        lines.append(
            f"{name:<58}{w['precision']:>7.1%} / {w['recall']:.1%} "
            f"({w['found']}/{w['wrong']}, right meter {w['suggestedRight']})"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """python -m fleetsim.bench.assignments [--quick]: this section on its own."""
    import argparse  # noqa: PLC0415 (only the command line needs it)

    parser = argparse.ArgumentParser(prog="fleetsim.bench.assignments", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 x 1,000 instead of 10,000")
    args = parser.parse_args(argv)
    print("\n".join(assignment_lines(assignment_stage(quick=args.quick), None)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
