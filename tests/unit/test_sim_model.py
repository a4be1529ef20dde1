"""The simulator's model, truth and fault injection (pure, no services)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from fleetdb.ingest.messages import MeterReading, Rejected, VehicleReading, decode
from fleetsim.faults import FaultConfig, FaultInjector, make_invalid
from fleetsim.model import BANDS, Fleet, FleetConfig, device_id
from fleetsim.runner import format_status
from fleetsim.truth import Truth

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
NOW = START + timedelta(days=1)


def _stream(config: FleetConfig, ticks: int) -> list[tuple[str, bytes]]:
    fleet = Fleet(config)
    out: list[tuple[str, bytes]] = []
    for k in range(ticks):
        out += [(m[2], m[3]) for m in fleet.tick(START + timedelta(minutes=k))]
    return out


def test_ids_are_zero_padded_and_widen_past_99999() -> None:
    assert device_id("METER", 0, 10_000) == "METER-00001"
    assert device_id("VEHICLE", 9_999, 10_000) == "VEHICLE-10000"
    assert device_id("METER", 0, 100_000) == "METER-000001"


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    cfg = FleetConfig(meters=50, vehicles=50, seed=7)
    a = _stream(cfg, 30)
    assert a == _stream(cfg, 30)
    assert a != _stream(FleetConfig(meters=50, vehicles=50, seed=8), 30)


def test_a_device_stream_does_not_depend_on_fleet_size() -> None:
    small = Fleet(FleetConfig(meters=10, vehicles=10, seed=3))
    big = Fleet(FleetConfig(meters=40, vehicles=40, seed=3))
    for k in range(20):
        ts = START + timedelta(minutes=k)
        s, b = small.tick(ts), big.tick(ts)
        # vehicle 0 (index 10 in the small fleet, 40 in the big one)
        assert s[10][3] == b[40][3]


def test_every_message_is_valid_for_fleetd_and_matches_the_formats() -> None:
    fleet = Fleet(FleetConfig(meters=100, vehicles=100, seed=1, clock_skew_s=20))
    for k in range(5):
        for _kind, _i, topic, payload, _micro, _hour in fleet.tick(START + timedelta(minutes=k)):
            decoded = decode(topic, payload, NOW)
            assert not isinstance(decoded, Rejected), decoded
            body = json.loads(payload)
            if isinstance(decoded, MeterReading):
                assert set(body) == {"meterId", "kwhConsumedAc", "voltage", "timestamp"}
            else:
                assert isinstance(decoded, VehicleReading)
                assert set(body) == {
                    "vehicleId",
                    "soc",
                    "kwhDeliveredDc",
                    "batteryTemp",
                    "timestamp",
                }
                assert 0 <= decoded.soc <= 100


def test_bands_have_exact_counts_and_efficiencies_in_range() -> None:
    fleet = Fleet(
        FleetConfig(meters=1000, vehicles=0, degraded_fraction=0.05, critical_fraction=0.01)
    )
    assert fleet.meter_band.count("critical") == 10
    assert fleet.meter_band.count("degraded") == 50
    for band, eff in zip(fleet.meter_band, fleet.meter_eff, strict=True):
        lo, hi = BANDS[band]
        assert lo <= eff <= hi


def test_truth_equals_the_sum_of_the_published_payloads() -> None:
    fleet = Fleet(FleetConfig(meters=100, vehicles=100, seed=5, clock_skew_s=90))
    truth = Truth(fleet)
    injector = FaultInjector(FaultConfig(), 5, truth, 200)
    sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    end = START + timedelta(hours=2)
    for _ts, msgs in fleet.ticks(START, end):
        for topic, payload in injector.apply(msgs):
            body = json.loads(payload, parse_float=Decimal)
            hour = body["timestamp"][:13] + ":00:00Z"
            kwh = body.get("kwhConsumedAc", body.get("kwhDeliveredDc"))
            sums[(topic.split("/")[1], hour)] += kwh
    doc = truth.to_json(seed=5, interval_s=60, start=START, end=end)
    doc = json.loads(json.dumps(doc))
    expected: dict[tuple[str, str], Decimal] = {}
    for mid, m in doc["meters"].items():
        for hour, h in m["hours"].items():
            expected[(mid, hour)] = Decimal(h["acKwh"])
    for vid, v in doc["vehicles"].items():
        for hour, h in v["hours"].items():
            expected[(vid, hour)] = Decimal(h["dcKwh"])
    assert expected == dict(sums)
    assert doc["published"] == {"meters": 12_000, "vehicles": 12_000, "invalid": 0, "duplicates": 0}
    # Skewed clocks (±90 s) put some readings into the hours before and after.
    assert len({h for (_d, h) in expected}) == 4


def test_efficiency_per_vehicle_falls_in_its_band() -> None:
    fleet = Fleet(
        FleetConfig(
            meters=300, vehicles=300, seed=11, degraded_fraction=0.1, critical_fraction=0.05
        )
    )
    truth = Truth(fleet)
    injector = FaultInjector(FaultConfig(), 11, truth, 600)
    for _ts, msgs in fleet.ticks(START, START + timedelta(hours=2)):
        injector.apply(msgs)
    checked = set()
    for j in range(300):
        m = fleet.vehicle_meter[j]
        ac = truth.meter_total(m) / 1e6
        dc = truth.vehicle_total(j) / 1e6
        if ac <= 10:
            continue
        lo, hi = BANDS[fleet.meter_band[m]]
        # Standby (30-90 W) lowers the ratio a little below eta; never above it.
        assert lo - 0.02 <= dc / ac <= hi, (j, fleet.meter_band[m], dc / ac)
        assert dc / ac <= fleet.meter_eff[m] + 1e-6
        checked.add(fleet.meter_band[m])
    assert checked == {"normal", "degraded", "critical"}


def test_a_good_share_of_vehicles_charges_within_an_hour() -> None:
    fleet = Fleet(FleetConfig(meters=500, vehicles=500, seed=2))
    charged = set()
    for k in range(60):
        fleet.tick(START + timedelta(minutes=k))
        charged |= {j for j, dc in enumerate(fleet.vehicle_dc) if dc}
    assert len(charged) > 300


def test_soc_stays_in_range_and_never_rises_while_not_charging() -> None:
    fleet = Fleet(FleetConfig(meters=200, vehicles=200, seed=4))
    last: dict[str, tuple[float, float]] = {}
    for k in range(240):
        for kind, _i, _topic, payload, _micro, _hour in fleet.tick(START + timedelta(minutes=k)):
            if kind == 0:
                continue
            body = json.loads(payload)
            soc, dc = body["soc"], body["kwhDeliveredDc"]
            assert 0 <= soc <= 100
            prev = last.get(body["vehicleId"])
            if prev is not None and dc == 0:
                assert soc <= prev[0]
            if dc > 0 and prev is not None:
                assert soc >= prev[0]
            last[body["vehicleId"]] = (soc, dc)


@pytest.mark.parametrize("variant", range(4))
def test_every_invalid_variant_is_rejected(variant: int) -> None:
    fleet = Fleet(FleetConfig(meters=3, vehicles=3))
    for _kind, _i, topic, payload, _micro, _hour in fleet.tick(START):
        bad = make_invalid(payload, variant, 42)
        assert isinstance(decode(topic, bad, NOW), Rejected), bad


def test_fault_rates_are_roughly_met_and_deterministic() -> None:
    def run() -> tuple[Truth, list[tuple[str, bytes]]]:
        fleet = Fleet(FleetConfig(meters=200, vehicles=200, seed=9))
        truth = Truth(fleet)
        inj = FaultInjector(
            FaultConfig(invalid_rate=0.05, duplicate_rate=0.03, out_of_order_rate=0.1),
            9,
            truth,
            400,
        )
        out: list[tuple[str, bytes]] = []
        for _ts, msgs in fleet.ticks(START, START + timedelta(minutes=50)):
            out += inj.apply(msgs)
        out += inj.flush()
        return truth, out

    truth, out = run()
    total = 400 * 50
    assert 0.04 * total < truth.invalid < 0.06 * total
    assert 0.02 * total < truth.duplicates < 0.04 * total
    assert len(out) == truth.valid + truth.invalid + truth.duplicates == total + truth.duplicates
    rejected = [p for t, p in out if isinstance(decode(t, p, NOW), Rejected)]
    assert len(rejected) == truth.invalid
    assert len(set(rejected)) == truth.invalid  # unique: fleetd keeps every one
    valid = [(t, p) for t, p in out if not isinstance(decode(t, p, NOW), Rejected)]
    assert len(set(valid)) == truth.valid
    # Out-of-order: some device's reading arrives after its next one.
    seen: dict[str, str] = {}
    late = 0
    for t, p in valid:
        ts = json.loads(p)["timestamp"]
        if t in seen and ts < seen[t]:
            late += 1
        seen[t] = max(ts, seen.get(t, ts))
    assert late > 100
    truth2, out2 = run()
    assert out2 == out
    assert truth2.invalid == truth.invalid


def test_the_live_status_line_fits_80_columns() -> None:
    """fleet-sim's live line is rewritten in place: wider than the terminal, it would wrap and
    scroll (issue 24)."""
    line = format_status(
        123_456.0, 99_999_999, 99_999_999, 99_999, datetime(2026, 11, 20, tzinfo=UTC)
    )
    assert len(line) < 80, line
