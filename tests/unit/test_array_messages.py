"""A device flushing its offline buffer in one MQTT message: a JSON array of readings, each
element validated on its own, and the message acked once every element committed, however its
elements were split across batches."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fleetd.ingest.acks import AckSequencer
from fleetd.ingest.batcher import Batcher
from fleetd.ingest.intake import Counters, Intake
from fleetdb.ingest.messages import (
    MAX_ARRAY_ITEMS,
    MeterReading,
    Rejected,
    decode,
    decode_many,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TOPIC = "meters/M1/telemetry"


def meter(minute: int, **kw: object) -> dict[str, object]:
    body: dict[str, object] = {
        "meterId": "M1",
        "kwhConsumedAc": 1.5,
        "voltage": 230.0,
        "timestamp": f"2026-11-23T11:{minute:02d}:00Z",
    }
    return body | kw


def array(*items: object) -> bytes:
    return json.dumps(list(items)).encode()


class TestDecodeMany:
    """One reading decodes as before; an array is one result per element, in order."""

    def test_a_single_reading_is_a_list_of_one(self) -> None:
        payload = json.dumps(meter(1)).encode()
        assert decode_many(TOPIC, payload, NOW) == [decode(TOPIC, payload, NOW)]

    def test_each_element_is_validated_on_its_own_and_rejects_name_their_index(self) -> None:
        payload = b" \n" + array(meter(1), meter(2, voltage=-1), 5, meter(3, meterId="M2"))
        out = decode_many(TOPIC, payload, NOW)
        assert len(out) == 4
        assert out[0] == MeterReading("M1", datetime(2026, 11, 23, 11, 1, tzinfo=UTC), 1.5, 230.0)
        assert isinstance(out[1], Rejected)
        assert out[1].reason == "item 1: voltage: must be > 0.0 (got -1)"
        assert (out[1].field, out[1].rule) == ("voltage", "must be > 0.0")
        assert json.loads(out[1].payload) == meter(2, voltage=-1)  # the element, not the array
        assert isinstance(out[2], Rejected)
        assert out[2].reason.startswith("item 2: ")
        assert isinstance(out[3], Rejected)
        assert out[3].reason == "item 3: meterId: 'M2' does not match topic id 'M1'"

    def test_nan_is_a_reject_of_its_element_naming_the_field(self) -> None:
        good = json.dumps(meter(1))
        payload = f'[{good}, {good[:-1]}, "x": NaN}}]'.replace('"x": NaN', '"voltage": NaN')
        out = decode_many(TOPIC, payload.encode(), NOW)
        assert isinstance(out[0], MeterReading)
        assert isinstance(out[1], Rejected)
        assert out[1].reason.startswith("item 1: voltage: must be a number")

    def test_an_array_that_cannot_be_read_is_one_reject(self) -> None:
        cases = {
            b"[]": "payload: an empty array",
            b"[1, ": "payload: not valid JSON",
            b"[\xff]": "payload: not UTF-8",
            b"[" * 100_000: "payload: ",
            array(*[1] * (MAX_ARRAY_ITEMS + 1)): f"exceed {MAX_ARRAY_ITEMS}",
        }
        for payload, reason in cases.items():
            out = decode_many(TOPIC, payload, NOW)
            assert len(out) == 1, payload[:20]
            assert isinstance(out[0], Rejected)
            assert reason in out[0].reason, (payload[:20], out[0].reason)

    def test_a_bad_topic_rejects_each_element(self) -> None:
        out = decode_many("meters/M1/bogus", array(meter(1), meter(2)), NOW)
        assert [type(i) for i in out] == [Rejected, Rejected]


def intake_of(batcher: Batcher, counters: Counters, *, gateways: bool = True) -> Intake:
    """An Intake into `batcher` that never pauses and takes any timestamp of ten years either
    side of now (the tests' readings are fixed in time; intake judges them by the clock);
    `gateways`: FLEET_MQTT_GATEWAYS."""
    return Intake(
        batcher,
        counters,
        max_buffered_rows=1000,
        max_packet_bytes=1 << 20,
        max_future=timedelta(days=3650),
        max_past=timedelta(days=3650),
        pause=lambda: None,
        in_flight=lambda: 0,
        gateways=gateways,
    )


def test_an_array_split_across_batches_is_acked_once_after_its_last_batch_committed() -> None:
    batcher = Batcher(batch_max_rows=2, flush_interval_s=60)
    counters = Counters()
    intake = intake_of(batcher, counters)
    intake.on_message(TOPIC, json.dumps(meter(0)).encode(), 1, 1, 1)
    intake.on_message(TOPIC, array(*(meter(m) for m in range(1, 5)), 7), 2, 1, 1)
    intake.on_message(TOPIC, json.dumps(meter(9)).encode(), 3, 1, 1)
    assert (counters.received, counters.valid, counters.rejected) == (7, 6, 1)
    batches = [batcher.take() for _ in range(4)]  # [m1, m2.0] [m2.1 m2.2] [m2.3 m2.4] [m3]
    assert [len(b) for b in batches] == [2, 2, 2, 1]
    sent: list[int] = []
    acks = AckSequencer(lambda mid, qos, gen: sent.append(mid) or True)
    # Out of order, as several writers commit: nothing of message 2 until all three commit.
    assert acks.committed(2, batches[2]) == (0, 0)
    assert acks.committed(0, batches[0]) == (1, 0)
    assert sent == [1]
    assert acks.committed(3, batches[3]) == (0, 0)
    assert acks.committed(1, batches[1]) == (2, 0)
    assert sent == [1, 2, 3]
