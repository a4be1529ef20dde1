"""Dead letters grouped by what broke (issue 24): one broken firmware is one group, whatever
device ids, values and parser offsets its reasons quote; the same groups for rejects stored
before fleetd stored their field and rule (sql/014)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleetctl.cli import main
from fleetdb.ingest.messages import Rejected, decode
from fleetdb.ingest.writer import write_batch

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
GOOD_METER = {"meterId": "M1", "kwhConsumedAc": 1.5, "voltage": 230.0}
GOOD_VEHICLE = {"vehicleId": "V1", "soc": 50, "kwhDeliveredDc": 1.0, "batteryTemp": 20.0}


def _meter(**kw: object) -> bytes:
    return json.dumps(GOOD_METER | {"timestamp": NOW.isoformat()} | kw).encode()


def _vehicle(**kw: object) -> bytes:
    return json.dumps(GOOD_VEHICLE | {"timestamp": NOW.isoformat()} | kw).encode()


# One message for each rule fleetdb/ingest/messages.py has (and the two reasons fleetd writes
# itself).
CASES: list[tuple[str, bytes]] = [
    ("meters/M1/status", _meter()),
    ("meters/M 1/telemetry", _meter()),
    ("meters/M1/telemetry", b" " * 9000),
    ("meters/M1/telemetry", b"\xff\xfe"),
    ("meters/M1/telemetry", b'{"meterId": "M1", '),
    ("meters/M1/telemetry", b"[1]"),
    ("meters/M1/telemetry", _meter(voltage=None)),
    ("meters/M1/telemetry", _meter(voltage="230")),
    ("meters/M1/telemetry", _meter(voltage=0)),
    ("meters/M1/telemetry", _meter(kwhConsumedAc=-1)),
    ("meters/M1/telemetry", _meter(meterId="M2")),
    ("meters/M1/telemetry", _meter(timestamp="2026-11-23T11:59:00")),
    ("meters/M1/telemetry", _meter(timestamp="yesterday")),
    ("meters/M1/telemetry", _meter(timestamp=(NOW + timedelta(hours=1)).isoformat())),
    ("meters/M1/telemetry", _meter(timestamp="1990-01-01T00:00:00Z")),
    ("vehicles/V1/telemetry", _vehicle(soc=150, batteryTemp=500)),
    ("vehicles/V1/telemetry", _vehicle(vehicleId="XV1")),
    ("vehicles/V1/telemetry", _vehicle(kwhDeliveredDc=float("nan"))),
]


def _rejected() -> list[Rejected]:
    found = [decode(topic, payload, NOW) for topic, payload in CASES]
    assert all(isinstance(r, Rejected) for r in found), found
    # What fleetd's intake writes for a packet over FLEET_MQTT_MAX_PACKET_BYTES.
    packet = "packet: 2000000 bytes exceeds FLEET_MQTT_MAX_PACKET_BYTES (1048576)"
    rule = "exceeds FLEET_MQTT_MAX_PACKET_BYTES"
    oversized = Rejected("meters/M1/telemetry", b"", packet, "packet", rule)
    return [r for r in found if isinstance(r, Rejected)] + [oversized]


async def test_a_reject_stored_without_its_group_is_grouped_as_fleetd_groups_it_today(
    db: asyncpg.Connection,
) -> None:
    """sql/014's reading of an old reason gives the field and rule fleetd stores now, rule by
    rule: a reject from before the migration (or from an older fleetd) joins its group."""
    for r in _rejected():
        field, rule = await db.fetchrow(
            "SELECT fleet_reject_field($1), fleet_reject_rule($1)", r.reason
        )
        assert (field, rule) == (r.field, r.rule), r.reason


async def _store(db: asyncpg.Connection, rejects: list[tuple[Rejected, datetime]]) -> None:
    await write_batch(db, [], [], rejects)


async def test_one_broken_firmware_is_one_group_with_an_example(
    db: asyncpg.Connection, analytics_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """79 vehicles whose firmware writes a wrong id, 40 truncated payloads of every length and
    two out-of-range socs: three groups (count, first and last seen, the last one as an
    example); rows stored before sql/014 (no field or rule) join the same groups."""
    rejects: list[tuple[Rejected, datetime]] = []
    for i in range(79):
        r = decode(f"vehicles/V{i}/telemetry", _vehicle(vehicleId=f"X{i}"), NOW)
        assert isinstance(r, Rejected)
        rejects.append((r, NOW - timedelta(minutes=79 - i)))
    for i in range(40):
        r = decode(f"meters/M{i}/telemetry", _meter(meterId=f"M{i}")[: 10 + i], NOW)
        assert isinstance(r, Rejected)
        rejects.append((r, NOW - timedelta(minutes=30)))
    await _store(db, rejects)
    # As an older fleetd wrote them: no field, no rule.
    for i, soc in enumerate((150, 101)):
        await db.execute(
            """INSERT INTO rejected_messages (received_at, topic, payload, reason, payload_sha256)
               VALUES ($1, $2, '', $3, sha256(convert_to($2, 'UTF8')))""",
            NOW - timedelta(minutes=5 - i),
            f"vehicles/W{i}/telemetry",
            f"soc: must be <= 100.0 (got {soc})",
        )
    assert (
        await asyncio.to_thread(main, ["--database-url", analytics_url, "--json", "rejects"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["total"] == 121
    assert out["newest"] == []  # the groups only, unless --limit asks for payloads
    groups = {(g["kind"], g["field"], g["rule"]): g for g in out["counts"]}
    assert list(groups) == [
        ("vehicles", "vehicleId", "does not match the topic's id"),
        ("meters", "payload", "not valid JSON"),
        ("vehicles", "soc", "must be <= 100.0"),
    ]
    ids = groups[("vehicles", "vehicleId", "does not match the topic's id")]
    assert ids["count"] == 79
    assert ids["firstSeen"] < ids["lastSeen"] == ids["newest"]
    assert ids["example"]["deviceId"] == "V78"
    assert ids["example"]["reason"] == "vehicleId: 'X78' does not match topic id 'V78'"
    assert groups[("vehicles", "soc", "must be <= 100.0")]["count"] == 2

    assert await asyncio.to_thread(main, ["--database-url", analytics_url, "rejects"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 1 + 2 + 2 * 3  # the total, the header, a row and an example per group
    assert all(len(line) <= 80 for line in table)
    assert "e.g. V78: vehicleId: 'X78' does not match topic id 'V78'" in table[4]

    args = ["--database-url", analytics_url, "rejects", "--field", "soc", "--limit", "1"]
    assert await asyncio.to_thread(main, [*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["total"], len(out["counts"]), len(out["newest"])) == (2, 1, 1)
    assert out["newest"][0]["topic"] == "vehicles/W1/telemetry"
