"""A gateway's MQTT message (gateways/{id}/telemetry): readings of several devices, meters and
vehicles mixed, each element's kind from its id field or its {type, payload} shape (the HTTP
ingest's own item code), each validated and kept on its own, the message acked once."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleetctl.analytics.rejects import _device_of
from fleetd.cli import EXIT_CONFIG, one_line
from fleetd.ingest.acks import AckSequencer
from fleetd.ingest.batcher import Batcher
from fleetd.ingest.gateway_grants import GatewayGrants, GatewaysFileError, load_grants
from fleetd.ingest.gateway_items import decode_gateway, is_gateway_topic
from fleetd.ingest.intake import Counters
from fleetd.mqtt.subscriber import TOPIC_FILTERS
from fleetdb.ingest.messages import MAX_ARRAY_ITEMS, MeterReading, Rejected, VehicleReading, decode
from tests.unit.test_array_messages import intake_of

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TOPIC = "gateways/GW-1/telemetry"
TS = "2026-11-23T11:00:00Z"


def meter(device: str = "M1", **kw: object) -> dict[str, object]:
    return {"meterId": device, "kwhConsumedAc": 1.5, "voltage": 230.0, "timestamp": TS} | kw


def vehicle(device: str = "V1", **kw: object) -> dict[str, object]:
    body = {"vehicleId": device, "soc": 50.0, "kwhDeliveredDc": 1.2, "batteryTemp": 25.0}
    return body | {"timestamp": TS} | kw


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def test_fleetd_subscribes_to_gateways_and_tells_their_topics_from_devices() -> None:
    assert "gateways/+/telemetry" in TOPIC_FILTERS
    assert is_gateway_topic(TOPIC)
    assert is_gateway_topic("gateways/x")  # malformed, still the gateway decoder's to refuse
    assert not is_gateway_topic("meters/M1/telemetry")


def test_meters_and_vehicles_mixed_each_by_its_id_field() -> None:
    out = decode_gateway(TOPIC, dumps([meter("M1"), vehicle("V7"), meter("M2")]), NOW)
    ts = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    assert out == [
        MeterReading("M1", ts, 1.5, 230.0),
        VehicleReading("V7", ts, 50.0, 1.2, 25.0),
        MeterReading("M2", ts, 1.5, 230.0),
    ]


def test_the_http_shapes_type_payload_elements_data_and_a_single_reading() -> None:
    typed = [{"type": "VEHICLE", "payload": vehicle("V1")}, {"type": "meter", "payload": meter()}]
    out = decode_gateway(TOPIC, dumps({"data": typed}), NOW)
    assert [type(x) for x in out] == [VehicleReading, MeterReading]
    one = decode_gateway(TOPIC, dumps(meter("M9")), NOW)
    assert [type(x) for x in one] == [MeterReading]
    assert one[0] == MeterReading("M9", datetime(2026, 11, 23, 11, 0, tzinfo=UTC), 1.5, 230.0)


def test_each_element_validated_by_its_devices_rules_a_bad_one_naming_gateway_and_index() -> None:
    elements = [meter(), vehicle("V1", soc=120), {"type": "CHARGER", "payload": {}}, 5, {"x": 1}]
    out = decode_gateway(TOPIC, dumps(elements), NOW)
    assert isinstance(out[0], MeterReading)
    bad = out[1]
    assert isinstance(bad, Rejected)
    assert bad.reason == "gateway GW-1 item 1: soc: must be <= 100.0 (got 120)"
    assert (bad.field, bad.rule) == ("soc", "must be <= 100.0")
    # Kept under its device's topic, its payload the reading: replay decodes it as V1's message.
    assert bad.topic == "vehicles/V1/telemetry"
    assert isinstance(decode(bad.topic, bad.payload, NOW), Rejected)
    assert json.loads(bad.payload)["soc"] == 120
    expected = {
        2: "type: must be METER or VEHICLE",
        3: "payload: must be a JSON object",
        4: "payload: needs meterId or vehicleId",
    }
    for index, reason in expected.items():
        item = out[index]
        assert isinstance(item, Rejected)
        assert item.reason.startswith(f"gateway GW-1 item {index}: {reason}"), item.reason
        assert item.topic == TOPIC  # no device to keep it under


def test_a_device_id_that_cannot_be_a_topic_level_is_kept_under_the_gateway() -> None:
    # Named by the element's own field, not "topic: ...": the element has no topic of its own.
    for device in ("M/1", "", "M" * 65):
        (item,) = decode_gateway(TOPIC, dumps([meter(device)]), NOW)
        assert isinstance(item, Rejected)
        assert item.topic == TOPIC
        assert (item.field, item.rule) == ("meterId", "must match [A-Za-z0-9_.:-]{1,64}")
        assert item.reason.startswith("gateway GW-1 item 0: meterId: must match"), item.reason


def test_a_message_that_cannot_be_read_as_a_whole_is_one_reject() -> None:
    cases = [
        ("gateways/GW-1/telemetry", b"[1,", "payload: not valid JSON", "not valid JSON"),
        ("gateways/GW-1/telemetry", b"\xff[]", "payload: not UTF-8", "not UTF-8"),
        ("gateways/GW-1/telemetry", b"[]", "payload: an empty array", "an empty array"),
        ("gateways/GW-1/telemetry", b"7", "payload: must be a reading", None),
        ("gateways/GW 1/telemetry", dumps([meter()]), "topic: gateway id must match", None),
        ("gateways/GW-1/other", dumps([meter()]), "topic: must be gateways/{id}/telemetry", None),
    ]
    for topic, payload, reason, rule in cases:
        (item,) = decode_gateway(topic, payload, NOW)
        assert isinstance(item, Rejected), topic
        assert item.reason.startswith(reason), item.reason
        assert (item.topic, item.payload) == (topic, payload)
        if rule:
            assert item.rule == rule
    many = dumps([meter()] * (MAX_ARRAY_ITEMS + 1))
    (item,) = decode_gateway(TOPIC, many, NOW)
    assert isinstance(item, Rejected)
    assert item.field == "payload"


def test_time_bounds_apply_to_each_element() -> None:
    future = (NOW + timedelta(hours=1)).isoformat()
    out = decode_gateway(TOPIC, dumps([meter(timestamp=future), meter("M2")]), NOW)
    assert isinstance(out[0], Rejected)
    assert out[0].field == "timestamp"
    assert isinstance(out[1], MeterReading)


def test_a_gateway_message_is_acked_once_after_all_its_elements_committed() -> None:
    batcher = Batcher(batch_max_rows=2, flush_interval_s=1)
    counters = Counters()
    intake = intake_of(batcher, counters)
    payload = dumps([meter("M1"), vehicle("V1", soc=-1), vehicle("V2"), meter("M3")])
    intake.on_message(TOPIC, payload, 42, 1, 1)
    assert (counters.received, counters.valid, counters.rejected) == (4, 3, 1)
    # The reject counted by its device's kind, not as a "gateways" one.
    assert counters.rejected_by_field == {("vehicles", "soc"): 1}
    acked: list[int] = []
    sequencer = AckSequencer(lambda mid, _qos, _gen: acked.append(mid) is None)
    first, second = batcher.take(), batcher.take()
    assert sequencer.committed(0, first) == (0, 0)  # half the elements: no ack yet
    assert acked == []
    assert sequencer.committed(1, second) == (1, 0)
    assert acked == [42]


class TestGrants:
    """FLEET_GATEWAYS_FILE: which devices each gateway may post for."""

    def test_the_file_and_its_bad_lines_named_by_number(self, tmp_path: Path) -> None:
        path = tmp_path / "gateways"
        path.write_text("# depot A\nGW-1 M1*, V1*\n\nGW-ANY\t*\n")
        grants = load_grants(path)
        assert grants.allows("GW-1", "M17")
        assert grants.allows("GW-1", "V1")
        assert not grants.allows("GW-1", "M2")
        assert grants.allows("GW-ANY", "anything")
        assert not grants.allows("GW-UNLISTED", "M1")  # a gateway not listed: no device
        for text, says in (
            ("GW-1\n", "line 1: gateway GW-1 needs device-id patterns (* for any)"),
            ("GW-1 *\nGW-1 M*\n", "line 2: gateway GW-1 listed twice"),
            ("# x\nGW/1 *\n", "line 2: gateway id must match"),
            # No gateway line at all would refuse every gateway, silently: an error, like an
            # empty FLEET_INGEST_TOKENS_FILE.
            ("", f"FLEET_GATEWAYS_FILE: {path} holds no gateway"),
            ("# depot A\n\n   \n", f"FLEET_GATEWAYS_FILE: {path} holds no gateway"),
        ):
            path.write_text(text)
            with pytest.raises(GatewaysFileError, match=re.escape(says)) as caught:
                load_grants(path)
            # fleetd's start ends with that one line and exit 2 (fleetd.cli.one_line).
            assert one_line(caught.value) == (EXIT_CONFIG, f"invalid configuration: {caught.value}")
            assert "\n" not in str(caught.value)
        with pytest.raises(GatewaysFileError, match="FLEET_GATEWAYS_FILE: cannot read"):
            load_grants(tmp_path / "missing")

    def test_an_element_of_a_device_not_granted_is_kept_under_the_gateways_topic(self) -> None:
        grants = GatewayGrants({"GW-1": ("M*",)})
        payload = dumps([meter("M1"), vehicle("V1"), vehicle("V2", soc=500)])
        out = decode_gateway(TOPIC, payload, NOW, grants=grants)
        assert isinstance(out[0], MeterReading)
        for index, device in ((1, "V1"), (2, "V2")):  # valid or not: not this gateway's
            item = out[index]
            assert isinstance(item, Rejected)
            assert item.topic == TOPIC  # never the device's: a replay must not store it
            assert (item.field, item.rule) == (
                "device",
                "a device FLEET_GATEWAYS_FILE does not grant this gateway",
            )
            assert item.reason.startswith(f"gateway GW-1 item {index}: device '{device}' is ")
            assert json.loads(item.payload)["vehicleId"] == device
        other = decode_gateway("gateways/GW-2/telemetry", dumps([meter("M1")]), NOW, grants=grants)
        assert isinstance(other[0], Rejected)


def test_gateways_off_a_gateway_message_is_one_reject_acked_never_readings() -> None:
    # A durable session subscribed with gateways on delivers what it queued after a restart
    # with FLEET_MQTT_GATEWAYS=off: kept as a reject saying so, acked like any message.
    batcher = Batcher(batch_max_rows=100, flush_interval_s=60)
    counters = Counters()
    intake = intake_of(batcher, counters, gateways=False)
    payload = dumps([meter("M1"), vehicle("V1")])
    intake.on_message("gateways/GW-1/telemetry", payload, 5, 1, 1)
    intake.on_message("meters/M2/telemetry", dumps(meter("M2")), 6, 1, 1)
    first, second = batcher.take().envelopes
    assert (first.mid, first.last) == (5, True)  # acked once committed, as any message
    reject, reading = first.item, second.item
    assert reject == Rejected(
        "gateways/GW-1/telemetry",
        payload,
        "gateways are off (FLEET_MQTT_GATEWAYS=off)",
        "topic",
        "gateways are off (FLEET_MQTT_GATEWAYS=off)",
    )
    assert isinstance(reading, MeterReading)
    assert (counters.received, counters.valid, counters.rejected) == (2, 1, 1)
    assert counters.rejected_by_field == {("gateways", "topic"): 1}


def test_fleetctl_rejects_names_no_device_for_a_gateways_reject() -> None:
    assert _device_of("vehicles/V1/telemetry") == "V1"
    assert _device_of(TOPIC) is None  # a gateway's id is no device's
    assert _device_of("http") is None
