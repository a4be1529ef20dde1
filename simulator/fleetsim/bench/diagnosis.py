"""The bench's diagnosis section: the charger fit (fleetctl.analytics.chargers.diagnose) on 3 h,
24 h and 7 d windows of a simulated fleet, scored against the model's truth.

The fleet's hourly sums are built in memory, exactly as the hourly rollups hold them (Σ kWh
and the reading count per device and UTC hour), so hundreds of windows can be fitted in
seconds; that the database path gives the same rows is tested on its own
(tests/integration/test_chargers.py). An invalid message replaces its reading (fleetsim.faults),
so "invalid input at rate p" is each reading lost with probability p, meters and vehicles
alike.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from fleetctl.analytics.chargers import diagnose
from fleetctl.analytics.hourly import Hourly
from fleetsim.charger_eval import score_rows
from fleetsim.model import Fleet, FleetConfig

START = datetime(2026, 11, 2, tzinfo=UTC)


@dataclass
class HourlySums:
    """(hours × devices) per kind: Σ micro-kWh and readings per UTC hour."""

    meter_kwh: npt.NDArray[np.int64]
    meter_n: npt.NDArray[np.int64]
    vehicle_kwh: npt.NDArray[np.int64]
    vehicle_n: npt.NDArray[np.int64]


def simulate(fleet: Fleet, hours: int, lost_rate: float, seed: int) -> HourlySums:
    """Step the fleet for `hours` and sum its readings per hour, each lost with `lost_rate`."""
    c = fleet.config
    per_h = 3600 // c.interval_s
    m, v = c.meters, c.vehicles
    out = HourlySums(
        np.zeros((hours, m), np.int64),
        np.zeros((hours, m), np.int64),
        np.zeros((hours, v), np.int64),
        np.zeros((hours, v), np.int64),
    )
    rng = np.random.default_rng(random.Random(f"fleetsim:{seed}:bench-lost").getrandbits(64))
    for h in range(hours):
        for _ in range(per_h):
            fleet.advance()
            keep_m = rng.random(m) >= lost_rate
            keep_v = rng.random(v) >= lost_rate
            out.meter_kwh[h] += np.asarray(fleet.meter_ac, np.int64) * keep_m
            out.meter_n[h] += keep_m
            out.vehicle_kwh[h] += np.asarray(fleet.vehicle_dc, np.int64) * keep_v
            out.vehicle_n[h] += keep_v
    return out


def _hourly(ids: list[str], kwh: npt.NDArray[np.int64], n: npt.NDArray[np.int64]) -> Hourly:
    hours, devices = np.nonzero(n)
    stamp = int(START.timestamp())
    return Hourly(
        [ids[d] for d in devices.tolist()],
        stamp + hours.astype(np.int64) * 3600,
        kwh[hours, devices],
        n[hours, devices],
    )


def windows_rows(
    fleet: Fleet, sums: HourlySums, window_h: int, *, step_h: int | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """(windows, rows): the diagnosis of every window of `window_h` whole hours, one after the
    other (or every `step_h` hours) over the simulated span."""
    total = sums.meter_n.shape[0]
    spans = [
        {
            "vehicle_id": vid,
            "meter_id": fleet.meter_ids[fleet.vehicle_meter[j]],
            "s": START,
            "e": START + timedelta(hours=total),
        }
        for j, vid in enumerate(fleet.vehicle_ids)
    ]
    rows: list[dict[str, Any]] = []
    windows = 0
    for h0 in range(0, total - window_h + 1, step_h or window_h):
        sl = slice(h0, h0 + window_h)
        meters = _hourly(fleet.meter_ids, sums.meter_kwh[sl], sums.meter_n[sl])
        vehicles = _hourly(fleet.vehicle_ids, sums.vehicle_kwh[sl], sums.vehicle_n[sl])
        meters.hour_s += h0 * 3600
        vehicles.hour_s += h0 * 3600
        rows += diagnose(meters, vehicles, spans, fleet.config.interval_s)
        windows += 1
    return windows, rows


def diagnosis_stage(*, quick: bool, say: Any = print) -> dict[str, Any]:
    """3 h and 24 h windows (quick: fewer meters, no 7 d), clean and with 0.2 % of the readings
    invalid; each figure over all windows' rows."""
    meters = 300 if quick else 1_000
    days = 2 if quick else 8
    out: dict[str, Any] = {"meters": meters, "days": days, "variants": {}}
    for name, lost in (("clean", 0.0), ("invalid 0.2%", 0.002)):
        t0 = time.perf_counter()
        cfg = FleetConfig(meters=meters, vehicles=meters, seed=7)
        fleet = Fleet(cfg)
        sums = simulate(fleet, days * 24, lost, cfg.seed)
        truth = Fleet(cfg)  # the truth: eta and standby as drawn (simulate() moved `fleet` on)
        lengths = (3, 24) if quick else (3, 24, 168)
        results = {}
        for hours in lengths:
            windows, rows = windows_rows(truth, sums, hours)
            results[f"{hours}h"] = {"windows": windows, **score_rows(rows, truth)}
        out["variants"][name] = results
        say(f"diagnosis {name}: {time.perf_counter() - t0:.1f} s")
    return out


def diagnosis_lines(d: dict[str, Any]) -> list[str]:
    """The bench table's section for the diagnosis."""
    lines = [
        f"12 charger diagnosis against the truth ({d['meters']:,} chargers, {d['days']} days;"
        " windows tiled):"
    ]
    for name, results in d["variants"].items():
        for span, s in results.items():
            e, w = s["etaError"], s["standbyErrorW"]
            cov = _pct(s["etaCoverage"]), _pct(s["standbyCoverage"])
            lines += [
                f"    {name}, {span} x {s['windows']}: {s['judged']:,} judged, "
                f"{s['withInterval']:,} with an interval, statuses {s['statuses']}",
                f"      |eta - eta_true| p50 / p95 / max"
                f"{_f(e['p50']):>10} / {_f(e['p95'])} / {_f(e['max'])}",
                f"      standby error W p50 / p95 / max"
                f"{_f(w['p50'], 1):>10} / {_f(w['p95'], 1)} / {_f(w['max'], 1)};"
                f" negative: {s['negativeStandby']}",
                f"      95 % interval coverage eta / standby{cov[0]:>10} / {cov[1]}",
                f"      degraded+critical precision / recall {s['precision']:.1%} / "
                f"{s['recall']:.1%} ({s['faulty']} faulty, {s['faultyUndecided']} undecided);"
                f" false critical {s['falseCritical']}",
            ]
    return lines


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _f(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    """python -m fleetsim.bench.diagnosis [--quick]: this section on its own."""
    import argparse  # noqa: PLC0415 (only the command line needs it)

    parser = argparse.ArgumentParser(prog="fleetsim.bench.diagnosis", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="300 chargers, 2 days, no 7 d")
    args = parser.parse_args(argv)
    print("\n".join(diagnosis_lines(diagnosis_stage(quick=args.quick))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
