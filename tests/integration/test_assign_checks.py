"""`fleetctl assign` and POST /v1/assignments (issue 24): an id that never reported is named
(a warning; refused with --strict / ?strict=true), and the same assignment or file again
changes nothing and succeeds ("unchanged")."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from fleetctl.cli import main
from tests.integration.test_analytics import load
from tests.integration.test_ops_http import TOKEN, fleetctl_serve, post_json

pytestmark = pytest.mark.integration

TS = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
SNAPSHOT = "SELECT id, vehicle_id, meter_id, valid_from, valid_to FROM vehicle_meter_assignments"


async def fleetctl(url: str, *args: str) -> int:
    return await asyncio.to_thread(main, ["--database-url", url, *args])


async def _reported(db: asyncpg.Connection, *ids: str) -> None:
    """One stored reading for each id (M... a meter, V... a vehicle), as fleetd stores it."""
    await load(
        db,
        [(i, TS, 1.0) for i in ids if i.startswith("M")],
        [(i, TS, 1.0) for i in ids if i.startswith("V")],
    )


async def test_assign_names_ids_that_never_reported_and_strict_refuses_them(
    db: asyncpg.Connection, admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _reported(db, "V1", "M1")
    assert await fleetctl(admin_url, "assign", "V1", "M1", "--from", "2026-11-01T00:00:00Z") == 0
    out = capsys.readouterr()
    assert (out.out.strip(), out.err) == ("V1 assigned to M1 from 2026-11-01T00:00:00Z", "")

    assert await fleetctl(admin_url, "assign", "V9", "M1", "--strict") == 1
    err = capsys.readouterr().err
    assert err.startswith("fleetctl: vehicle V9 has never reported: check the id")
    assert len(err.strip().splitlines()) == 1
    assert await db.fetchval("SELECT count(*) FROM vehicle_meter_assignments") == 1

    assert await fleetctl(admin_url, "--json", "assign", "V9", "M8") == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["neverSeen"] == {"vehicles": ["V9"], "meters": ["M8"]}
    assert out.err.splitlines() == [
        "fleetctl: warning: 1 vehicle never reported (no reading stored): V9; "
        "--strict refuses them",
        "fleetctl: warning: 1 meter never reported (no reading stored): M8; --strict refuses them",
    ]


async def test_the_same_assignment_again_is_unchanged(
    db: asyncpg.Connection, admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _reported(db, "V1", "M1", "M2")
    args = ["assign", "V1", "M1", "--from", "2026-11-01T00:00:00Z"]
    assert await fleetctl(admin_url, *args) == 0
    before = await db.fetch(SNAPSHOT)
    capsys.readouterr()
    assert await fleetctl(admin_url, *args) == 0
    assert "V1 already assigned (unchanged) to M1" in capsys.readouterr().out
    assert await db.fetch(SNAPSHOT) == before
    # Another meter from the same instant is still a conflict: a change, not a repeat.
    assert await fleetctl(admin_url, "assign", "V1", "M2", "--from", "2026-11-01T00:00:00Z") == 1
    assert "already has an assignment to M1" in capsys.readouterr().err


async def test_importing_the_same_file_twice_changes_nothing_and_succeeds(
    db: asyncpg.Connection, admin_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _reported(db, *(f"V{i}" for i in range(1, 6)), *(f"M{i}" for i in range(1, 6)))
    csv = tmp_path / "fleet.csv"
    csv.write_text(
        "vehicle_id,meter_id,valid_from,valid_to\n"
        "V1,M1,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z\n"
        "V1,M2,2026-11-01T00:00:00Z,\n"
        + "".join(f"V{i},M{i},2026-11-01T00:00:00Z,\n" for i in range(2, 6))
    )
    assert await fleetctl(admin_url, "assign", "--file", str(csv)) == 0
    out = capsys.readouterr()
    assert (out.out.strip(), out.err) == ("imported 6 assignments of 5 vehicles", "")
    before = await db.fetch(SNAPSHOT)
    assert await fleetctl(admin_url, "assign", "--file", str(csv)) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "nothing imported: all 6 assignments already present (unchanged)"
    assert await db.fetch(SNAPSHOT) == before

    # One new line among known ones: only it is written.
    csv.write_text(csv.read_text() + "V6,M6,2026-11-01T00:00:00Z,\n")
    assert await fleetctl(admin_url, "--json", "assign", "--file", str(csv), "--strict") == 1
    err = capsys.readouterr().err
    assert err.startswith("fleetctl: line 8: vehicle V6 has never reported (and 1 more)")
    assert await db.fetch(SNAPSHOT) == before
    assert await fleetctl(admin_url, "--json", "assign", "--file", str(csv)) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == {
        "imported": 1,
        "unchanged": 6,
        "vehicles": 1,
        "neverSeen": {"vehicles": ["V6"], "meters": ["M6"]},
    }
    assert "1 vehicle never reported (no reading stored): V6" in out.err


async def test_post_assignments_is_idempotent_and_strict_like_the_cli(
    db: asyncpg.Connection, analytics_url: str, admin_url: str
) -> None:
    await _reported(db, "V1", "M1")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = json.dumps(
        [
            {"vehicleId": "V1", "meterId": "M1", "validFrom": "2026-11-01T00:00:00Z"},
            {"vehicleId": "V2", "meterId": "M1", "validFrom": "2026-11-01T00:00:00Z"},
        ]
    )
    with fleetctl_serve(
        analytics_url, FLEET_API_TOKEN=TOKEN, FLEET_ADMIN_DATABASE_URL=admin_url
    ) as port:
        status, answer = await post_json(port, "/v1/assignments?strict=true", body, headers=auth)
        assert (status, answer["error"][:44]) == (
            400,
            "item 2: vehicle V2 has never reported: check",
        )
        assert await db.fetchval("SELECT count(*) FROM vehicle_meter_assignments") == 0
        first = await post_json(port, "/v1/assignments", body, headers=auth)
        never_seen = {"vehicles": ["V2"], "meters": []}
        expected = {"imported": 2, "unchanged": 0, "vehicles": 2, "neverSeen": never_seen}
        assert first == (200, expected)
        again = await post_json(port, "/v1/assignments", body, headers=auth)
        assert (again[0], again[1]["imported"], again[1]["unchanged"]) == (200, 0, 2)
        status, answer = await post_json(port, "/v1/assignments?strict=maybe", body, headers=auth)
        assert status == 400
        assert "strict" in answer["error"]
