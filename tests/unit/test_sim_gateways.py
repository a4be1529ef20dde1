"""fleet-sim --gateways: the devices split among N gateways, a tick's readings published as
arrays on each gateway's topic, meters and vehicles mixed, at most MAX_READINGS a message, and
each array what fleetd's gateway decoder reads back as the same readings."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from fleetd.ingest.gateway_items import decode_gateway
from fleetdb.ingest.messages import Rejected, decode
from fleetsim.cli import build_parser, options_from_args
from fleetsim.gateways import MAX_READINGS, Gateways, gateway_topic
from fleetsim.model import Fleet, FleetConfig
from fleetsim.runner import SimOptions

TS = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _tick(meters: int, vehicles: int) -> tuple[Fleet, list[tuple[str, bytes]]]:
    fleet = Fleet(FleetConfig(meters=meters, vehicles=vehicles, seed=2))
    return fleet, [(m[2], m[3]) for m in fleet.tick(TS)]


def test_each_gateway_holds_runs_of_meters_and_vehicles_and_the_readings_stay_the_same() -> None:
    fleet, out = _tick(10, 20)
    grouped = Gateways(fleet, 3).group(out)
    assert [t for t, _ in grouped] == [gateway_topic(g) for g in range(3)]
    assert gateway_topic(0) == "gateways/GATEWAY-00001/telemetry"
    now = datetime(2026, 11, 23, 10, 1, tzinfo=UTC)
    back = [item for t, p in grouped for item in decode_gateway(t, p, now)]
    assert not [x for x in back if isinstance(x, Rejected)]
    # The same readings fleetd decodes from each device's own topic, none lost or added.
    assert sorted(map(repr, back)) == sorted(repr(decode(t, p, now)) for t, p in out)
    first = json.loads(grouped[0][1])
    assert {e.get("meterId") for e in first} >= {"METER-00001", "METER-00003"}
    assert {e.get("vehicleId") for e in first} >= {"VEHICLE-00001", "VEHICLE-00006"}


def test_a_gateways_readings_are_split_into_messages_of_at_most_max_readings() -> None:
    fleet, out = _tick(MAX_READINGS, MAX_READINGS)
    grouped = Gateways(fleet, 1).group(out)
    assert [len(json.loads(p)) for _, p in grouped] == [MAX_READINGS, MAX_READINGS]
    assert max(len(p) for _, p in grouped) < 65536  # the repo's mosquitto.conf max_packet_size


def test_the_option_and_what_it_cannot_be_combined_with() -> None:
    args = build_parser().parse_args(["run", "--gateways", "4", "--meters", "8"])
    assert options_from_args(args).gateways == 4
    SimOptions(meters=4, vehicles=4, gateways=2).check()
    with pytest.raises(ValueError, match="--gateways cannot be combined with --invalid-rate"):
        SimOptions(meters=4, vehicles=4, gateways=2, invalid_rate=0.1).check()
    with pytest.raises(ValueError, match="--gateways must be >= 0"):
        SimOptions(gateways=-1).check()
