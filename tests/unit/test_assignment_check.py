"""The assignment check's matching (fleetctl.analytics.assignment_check) on synthetic charging
signatures and hourly energies, without a database; and its alert rule's hysteresis."""

from __future__ import annotations

from typing import Any

import numpy as np

from fleetctl.alerts.rules import wanted
from fleetctl.analytics.assignment_check import Grid, candidates, judge

HOURS = 24
STANDBY_KWH = 0.05  # per hour


def _sessions(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, HOURS) DC kWh: each vehicle charges in random runs of hours at its own power."""
    dc = np.zeros((n, HOURS))
    for v in range(n):
        power = rng.uniform(7, 50)
        for start in rng.choice(HOURS - 3, size=3, replace=False):
            dc[v, start : start + rng.integers(1, 4)] = power * rng.uniform(0.3, 1.0)
    return dc


def _grid(dc: np.ndarray, real: list[int], registered: list[int], n_meters: int) -> Grid:
    """Meters draw DC / 0.9 of the vehicles that really charge at them, plus standby."""
    ac = np.full((n_meters, HOURS), STANDBY_KWH)
    for v, m in enumerate(real):
        ac[m] += dc[v] / 0.9
    n = len(real)
    assigned = np.repeat(np.asarray(registered, np.int64)[:, None], HOURS, 1)
    return Grid(
        meters=[f"M{i}" for i in range(n_meters)],
        vehicles=[f"V{i}" for i in range(n)],
        ac=ac,
        meter_h=np.ones((n_meters, HOURS)),
        dc=dc,
        vehicle_h=np.ones((n, HOURS)),
        assigned=assigned,
        latest=np.asarray(registered, np.int64),
    )


class TestCandidates:
    """Signatures: the meter whose drawing hours are the vehicle's charging hours ranks first."""

    def test_the_matching_meter_ranks_first_by_jaccard(self) -> None:
        rng = np.random.default_rng(1)
        meters = rng.random((500, HOURS)) < 0.4
        order = rng.permutation(500)[:200]
        charging = meters[order].copy()
        idx, jac = candidates(charging, meters, k=4)
        assert (idx[:, 0] == order).all()
        assert np.allclose(jac[:, 0], 1.0)
        assert (np.diff(jac, axis=1) <= 0).all()  # best first

    def test_fewer_meters_than_candidates_and_empty_inputs(self) -> None:
        idx, _ = candidates(np.ones((3, HOURS), bool), np.ones((2, HOURS), bool), k=8)
        assert idx.shape == (3, 2)
        assert sorted(idx[0].tolist()) == [0, 1]
        assert candidates(np.zeros((0, HOURS), bool), np.ones((2, HOURS), bool))[0].shape == (0, 2)


class TestJudge:
    """Whole verdicts on a synthetic fleet with known wrong assignments."""

    def test_wrong_assignments_are_found_with_the_right_meter(self) -> None:
        rng = np.random.default_rng(7)
        n = 300
        dc = _sessions(rng, n)
        real = list(range(n))
        registered = list(real)
        wrong = {5: 17, 80: 81, 201: 3}  # vehicle -> meter it is registered to
        for v, m in wrong.items():
            registered[v] = m
        rows = {r["vehicleId"]: r for r in judge(_grid(dc, real, registered, n))}
        suspects = {v for v, r in rows.items() if r["status"] == "suspect"}
        assert suspects == {f"V{v}" for v in wrong}
        for v in wrong:
            r = rows[f"V{v}"]
            assert r["suggestedMeterId"] == f"M{v}"
            assert r["assigned"]["chargingHoursWithoutAc"] >= 2
            assert r["best"]["fit"]["relativeError"] < 0.01
            assert abs(r["best"]["fit"]["conversionEfficiency"] - 0.9) < 0.01
        # The vehicle that really charges at a wrongly shared meter is not blamed.
        assert rows["V17"]["status"] == "ok"
        assert rows["V17"]["suggestedMeterId"] is None

    def test_a_shared_meter_is_fitted_with_its_other_vehicles(self) -> None:
        rng = np.random.default_rng(3)
        dc = _sessions(rng, 40)
        real = [v // 2 for v in range(40)]  # two vehicles per meter
        rows = judge(_grid(dc, real, list(real), 20))
        assert {r["status"] for r in rows} == {"ok"}
        assert all(r["assigned"]["fit"]["relativeError"] < 0.01 for r in rows)

    def test_hours_a_side_did_not_report_whole_are_no_evidence(self) -> None:
        """A vehicle asleep for part of an hour (its DC short of the hour's) or a meter that lost
        half an hour of readings (its AC short) does not count against the assignment."""
        rng = np.random.default_rng(5)
        dc = _sessions(rng, 50)
        grid = _grid(dc, list(range(50)), list(range(50)), 50)
        charging = np.nonzero(dc[7] > 1)[0]
        grid.meter_h[7, charging[:2]] = 0.4  # the meter reported 40 % of two charging hours
        grid.ac[7, charging[:2]] *= 0.1
        grid.vehicle_h[8, :] = 0.5  # half of every hour: nothing of this vehicle is judged
        rows = {r["vehicleId"]: r for r in judge(grid)}
        assert rows["V7"]["status"] == "ok"
        assert rows["V7"]["assigned"]["chargingHoursWithoutAc"] == 0
        assert rows["V8"]["status"] == "insufficient_data"

    def test_too_little_charging_and_no_assignment(self) -> None:
        dc = np.zeros((2, HOURS))
        dc[0, 3] = 10.0  # one hour of charging: not enough to judge
        dc[1, 2:6] = 20.0
        grid = _grid(dc, [0, 1], [0, 1], 2)
        grid.assigned[1] = -1
        grid.latest[1] = -1
        rows = {r["vehicleId"]: r for r in judge(grid)}
        assert rows["V0"]["status"] == "insufficient_data"
        assert rows["V1"]["status"] == "unassigned"
        assert rows["V1"]["suggestedMeterId"] == "M1"

    def test_vehicles_without_any_meter_reporting_are_judged_not_crashed(self) -> None:
        # The alert evaluator runs the check every cycle: a fleet whose meters have not reported
        # yet must give verdicts, not an IndexError.
        dc = np.zeros((2, HOURS))
        dc[:, 2:6] = 20.0
        grid = _grid(dc, [], [], 0)
        grid.vehicles = ["V0", "V1"]
        grid.vehicle_h = np.ones((2, HOURS))
        grid.assigned = np.full((2, HOURS), -1, np.int64)
        grid.latest = np.full(2, -1, np.int64)
        rows = {r["vehicleId"]: r for r in judge(grid)}
        assert {r["status"] for r in rows.values()} == {"unassigned"}
        assert all(r["suggestedMeterId"] is None for r in rows.values())


def _verdict(status: str, without_ac: int = 0, err: float | None = 0.0) -> dict[str, Any]:
    side = {
        "chargingHours": 10,
        "chargingHoursWithoutAc": without_ac,
        "acHoursWithoutDc": 0,
        "fit": {"relativeError": err},
    }
    return {
        "vehicleId": "V1",
        "status": status,
        "meterId": "M2",
        "suggestedMeterId": "M1",
        "assigned": side,
    }


def _open(rows: list[dict[str, Any]], was: list[tuple[str, str]]) -> bool:
    return any(w.kind == "assignment_suspect" for w in wanted([], [], [], was, assignments=rows))


def test_assignment_suspect_opens_on_suspect_and_resolves_once_the_meter_clearly_fits() -> None:
    assert _open([_verdict("suspect", 5, 0.9)], [])
    assert not _open([_verdict("ok", 1, 0.2)], [])
    was = [("assignment_suspect", "V1")]
    assert _open([_verdict("ok", 1, 0.0)], was)  # a charging hour still unseen: stays open
    assert _open([_verdict("ok", 0, 0.2)], was)  # fit not yet clearly good
    assert not _open([_verdict("ok", 0, 0.01)], was)
    assert not _open([_verdict("insufficient_data", 0, None)], was)


def test_the_check_table_fits_80_columns_and_wide_adds_the_best_meter() -> None:
    from fleetctl.cli.app import Output  # noqa: PLC0415 (Click only where needed)
    from fleetctl.cli.assignments import show_check  # noqa: PLC0415

    side = {
        "meterId": "METER-10000",
        "hours": 168,
        "chargingHours": 120,
        "chargingHoursWithoutAc": 101,
        "acHoursWithoutDc": 99,
        "fit": {"relativeError": 12.3456, "conversionEfficiency": None, "standbyW": 150.0},
    }
    row = {
        **_verdict("suspect"),
        "vehicleId": "VEHICLE-10000",
        "meterId": "METER-10000",
        "suggestedMeterId": "METER-09999",
        "assigned": side,
        "best": {**side, "meterId": "METER-09999", "jaccard": 1.0},
    }
    report = {
        "window": {"start": "2026-11-19T10:42:30Z", "end": "2026-11-20T10:42:30Z"},
        "count": 10_000,
        "statusCounts": {"suspect": 100, "unassigned": 0, "ok": 9899, "insufficient_data": 1},
        "vehicles": [row],
    }
    narrow = show_check(report, Output(colour=False))
    assert all(len(line) <= 80 for line in narrow.splitlines()), narrow
    assert "METER-09999" in narrow
    assert "best fit" in show_check(report, Output(colour=False, wide=True))
    assert "no assignment looks wrong" in show_check({**report, "vehicles": []}, Output(False))
