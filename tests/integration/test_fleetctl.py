"""fleetctl end to end: JSON for machines, tables for people, one-line errors with exit 1."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from fleet_harness.publish import meter_message, vehicle_message
from fleetctl.cli import main, render, root
from fleetctl.cli.app import Job, Output, command
from fleetctl.roles import Role
from tests.conftest import _with_db, as_user, assert_rollups_match_raw
from tests.integration.test_analytics import T0, depot, load

pytestmark = pytest.mark.integration

WINDOW = ["--start", "2026-11-20T08:00:00Z", "--end", "2026-11-20T11:00:00Z"]


async def fleetctl(url: str, *args: str) -> int:
    return await asyncio.to_thread(main, ["--database-url", url, *args])


async def test_json_outputs(
    db: asyncpg.Connection, analytics_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    database_url = analytics_url  # reports read as a fleet_analytics login
    await depot(db)
    assert await fleetctl(database_url, "--json", "performance", "V1", *WINDOW) == 0
    perf = json.loads(capsys.readouterr().out)
    assert perf["vehicleId"] == "V1"
    assert perf["status"] == "optimal"
    assert isinstance(perf["totalAcKwh"], float)
    assert len(perf["hourly"]) == 3
    assert await fleetctl(database_url, "--json", "fleet", *WINDOW) == 0
    fleet = json.loads(capsys.readouterr().out)
    assert fleet["vehicles"][0]["vehicleId"] == "V3"
    assert await fleetctl(database_url, "--json", "anomalies", "--threshold", "0.7", *WINDOW) == 0
    assert [v["vehicleId"] for v in json.loads(capsys.readouterr().out)["vehicles"]] == [
        "V3",
        "V4",
    ]
    assert await fleetctl(database_url, "anomalies", "--threshold", "85", *WINDOW) == 1
    assert "threshold must be an efficiency ratio in (0, 1.5]" in capsys.readouterr().err
    assert await fleetctl(database_url, "--json", "current", "vehicles") == 0
    assert json.loads(capsys.readouterr().out)["count"] == 8
    assert await fleetctl(database_url, "--json", "current", "all") == 0
    both = json.loads(capsys.readouterr().out)
    assert both["vehicles"]["count"] == 8
    assert both["count"] == both["meters"]["count"] + 8


async def test_tables_and_assignments(
    db: asyncpg.Connection,
    analytics_url: str,
    admin_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database_url = analytics_url  # reports as fleet_analytics; assignments as fleet_admin
    await depot(db)
    assert await fleetctl(database_url, "fleet", *WINDOW) == 0
    out = capsys.readouterr().out
    assert "critical" in out
    assert "V5" in out
    assert "\033[" not in out
    assert await fleetctl(database_url, "performance", "V4", *WINDOW) == 0
    assert "M4" in capsys.readouterr().out
    assert await fleetctl(database_url, "current", "all") == 0
    out = capsys.readouterr().out
    assert "8 vehicles," in out
    assert " meters, " in out
    later = (T0 + timedelta(hours=5)).isoformat()
    assert await fleetctl(admin_url, "assign", "V1", "M2", "--from", later) == 0
    assert "assigned to M2" in capsys.readouterr().out
    assert await fleetctl(database_url, "--json", "assignments", "V1") == 0
    history = json.loads(capsys.readouterr().out)
    assert [a["meterId"] for a in history] == ["M1", "M2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["performance", "NOPE", "--hours", "3"], "unknown vehicle 'NOPE'"),
        (["current", "meters", "NOPE"], "unknown meter 'NOPE'"),
        (["current", "all", "V1"], "needs its kind"),
        (["assign", "V4", "M9", "--from", "2026-11-20T08:00:00Z"], "already has an assignment"),
    ],
)
async def test_errors_are_one_line_with_exit_1(
    db: asyncpg.Connection,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    await depot(db)
    assert await fleetctl(database_url, *args) == 1
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert err.startswith("fleetctl: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["fleet", "--start", "2026-11-20T10:00:00Z", "--end", "2026-11-20T09:00:00Z"],
            "is not after start",
        ),
        (["fleet", "--start", "yesterday"], "not an RFC 3339 timestamp"),
        (["fleet", "--hours", "-1"], "--hours must be > 0"),
    ],
)
async def test_window_errors_are_usage_errors_with_exit_2(
    database_url: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert await fleetctl(database_url, *args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert err.startswith("fleetctl: ")


async def test_unreachable_database_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://fleet:secret@127.0.0.1:1/fleet"
    assert await fleetctl(url, "current", "meters") == 1
    err = capsys.readouterr().err
    assert "database unreachable" in err
    assert "secret" not in err
    assert err.count("\n") == 1


async def test_partitions_list_ensure_and_retention(
    db: asyncpg.Connection, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await depot(db)  # 2026-11-19 (assignments only) and 2026-11-20 readings
    assert await fleetctl(database_url, "--json", "partitions", "ensure") == 0
    capsys.readouterr()
    assert await fleetctl(database_url, "--json", "partitions", "list") == 0
    days = {(p["table"], p["day"]) for p in json.loads(capsys.readouterr().out)}
    assert ("vehicle_readings", "2026-11-20") in days
    assert await fleetctl(database_url, "--json", "partitions", "drop-older-than", "1") == 0
    dropped = json.loads(capsys.readouterr().out)["dropped"]
    assert "meter_readings_p20261120" in dropped
    assert not any("hourly" in d for d in dropped)  # rollups outlive raw history
    assert await db.fetchval("SELECT count(*) FROM meter_readings") == 0
    assert await db.fetchval("SELECT count(*) FROM meter_hourly") > 0
    assert await fleetctl(database_url, "partitions", "drop-older-than") == 1


async def test_assignments_from_a_csv_file_all_or_nothing(
    db: asyncpg.Connection,
    admin_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Onboarding: one import in one transaction. A line that overlaps a stored assignment is
    named, and nothing of the file is written."""
    good = tmp_path / "fleet.csv"
    good.write_text(
        "vehicle_id,meter_id,valid_from\n"
        + "".join(f"VEHICLE-{i:05d},METER-{i:05d},2026-11-01T00:00:00Z\n" for i in range(1, 501))
    )
    assert await fleetctl(admin_url, "assign", "--file", str(good)) == 0
    assert "imported 500 assignments of 500 vehicles" in capsys.readouterr().out
    assert await db.fetchval("SELECT count(*) FROM vehicle_meter_assignments") == 500

    bad = tmp_path / "more.csv"
    bad.write_text(
        "vehicle_id,meter_id,valid_from,valid_to\n"
        "VEHICLE-01000,METER-01000,2026-11-01T00:00:00Z,\n"
        "VEHICLE-00007,METER-00099,2026-10-01T00:00:00Z,2026-11-02T00:00:00Z\n"
    )
    assert await fleetctl(admin_url, "assign", "--file", str(bad)) == 1
    err = capsys.readouterr().err
    assert err.startswith("fleetctl: line 3: VEHICLE-00007 would have two meters at once")
    assert len(err.strip().splitlines()) == 1
    assert await db.fetchval("SELECT count(*) FROM vehicle_meter_assignments") == 500

    assert (
        await fleetctl(admin_url, "unassign", "VEHICLE-00007", "--at", "2026-11-10T00:00:00Z") == 0
    )
    assert "VEHICLE-00007 unassigned from METER-00007" in capsys.readouterr().out
    assert await fleetctl(admin_url, "unassign", "VEHICLE-00007") == 1
    assert "has no open assignment" in capsys.readouterr().err
    assert (
        await fleetctl(admin_url, "unassign", "VEHICLE-00008", "--at", "2026-10-01T00:00:00Z") == 1
    )
    assert "end it after that" in capsys.readouterr().err
    assert await fleetctl(admin_url, "assign", "--file", str(tmp_path / "nope.csv")) == 1
    assert "nope.csv" in capsys.readouterr().err
    assert await fleetctl(admin_url, "assign", "V1") == 1
    assert "assign needs VEHICLE METER, or --file" in capsys.readouterr().err


async def test_rejects_counted_by_field_and_rule_with_the_newest_payloads(
    db: asyncpg.Connection, analytics_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        ("vehicles/V1/telemetry", b'{"soc": 150}', "soc: must be <= 100 (got 150)"),
        ("vehicles/V2/telemetry", b'{"soc": 101}', "soc: must be <= 100 (got 101)"),
        ("meters/M1/telemetry", b"\xff\xfe", "payload: not UTF-8 (byte 0)"),
    ]
    for i, (topic, payload, reason) in enumerate(rows):
        await db.execute(
            """INSERT INTO rejected_messages (received_at, topic, payload, reason, payload_sha256)
               VALUES (now() - make_interval(secs => $1), $2, $3, $4, sha256($3))""",
            float(10 - i),
            topic,
            payload,
            reason,
        )
    assert await fleetctl(analytics_url, "--json", "rejects", "--limit", "20") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"] == 3
    assert out["counts"][0] == {
        **out["counts"][0],
        "kind": "vehicles",
        "field": "soc",
        "rule": "must be <= 100",
        "count": 2,
    }
    newest = out["newest"][0]
    assert (newest["topic"], newest["payloadEncoding"], newest["payload"]) == (
        "meters/M1/telemetry",
        "base64",
        "//4=",
    )
    assert out["newest"][1]["payload"] == '{"soc": 101}'
    assert await fleetctl(analytics_url, "--json", "rejects", "--field", "soc", "--limit", "1") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["total"], len(out["newest"])) == (2, 1)
    assert await fleetctl(analytics_url, "rejects") == 0
    assert "3 rejected messages since" in capsys.readouterr().out
    assert await fleetctl(analytics_url, "rejects", "--limit", "5000") == 1
    assert "limit must be between 0 and 1000" in capsys.readouterr().err


async def test_rejects_replayed_with_todays_rules_are_stored_exactly_once(
    db: asyncpg.Connection, admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    fixed = vehicle_message("V1", ts, 95.0, 1.5, 30.0)  # rejected by an older, stricter rule
    broken = vehicle_message("V2", ts, 150.0, 1.5, 30.0)  # still out of range today
    known = meter_message("M1", ts, 2.0, 230.0)  # stored meanwhile by a redelivery
    await load(db, [("M1", ts, 2.0)])
    for topic, payload, reason in (
        (*fixed, "soc: must be <= 90 (got 95)"),
        (*broken, "soc: must be <= 100 (got 150)"),
        (*known, "meterId: stale rule"),
    ):
        await db.execute(
            """INSERT INTO rejected_messages (received_at, topic, payload, reason, payload_sha256)
               VALUES (now(), $1, $2, $3, sha256($2))""",
            topic,
            payload,
            reason,
        )
    since = ["--since", (ts - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert await fleetctl(admin_url, "--json", "rejects", "replay", *since) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["replayed"], first["stored"], first["alreadyStored"], first["stillRejected"]) == (
        3,
        1,
        1,
        1,
    )
    assert first["stillRejectedByField"] == {"soc": 1}
    assert await fleetctl(admin_url, "--json", "rejects", "replay", *since) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["replayed"], again["stored"], again["stillRejected"]) == (1, 0, 1)
    assert await db.fetchval("SELECT count(*) FROM vehicle_readings") == 1
    assert await db.fetchval("SELECT count(*) FROM meter_readings") == 1
    outcomes = await db.fetch("SELECT topic, replay_outcome FROM rejected_messages ORDER BY id")
    assert [r["replay_outcome"] for r in outcomes] == [
        "stored",
        "still rejected: soc: must be <= 100.0 (got 150.0)",
        "already stored",
    ]
    await assert_rollups_match_raw(db)


async def test_json_after_the_command_and_limit_under_json(
    db: asyncpg.Connection, analytics_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await depot(db)
    assert await fleetctl(analytics_url, "fleet", *WINDOW, "--json", "--limit", "2") == 0
    limited = json.loads(capsys.readouterr().out)
    assert [v["vehicleId"] for v in limited["vehicles"]] == ["V3", "V4"]
    assert limited["totals"]["vehicles"] > 2  # the totals still count every vehicle
    assert await fleetctl(analytics_url, "fleet", *WINDOW, "--limit", "2") == 0
    more = limited["totals"]["vehicles"] - 2
    assert f"... {more} more (--limit)" in capsys.readouterr().out
    assert await fleetctl(analytics_url, "chargers", *WINDOW, "--limit", "1", "--json") == 0
    assert len(json.loads(capsys.readouterr().out)["chargers"]) == 1
    assert await fleetctl(analytics_url, "assignments", "V4", "--json") == 0
    assert [a["meterId"] for a in json.loads(capsys.readouterr().out)] == ["M4", "M5"]


async def test_a_new_report_is_one_function_and_one_registration(
    db: asyncpg.Connection, analytics_url: str
) -> None:
    """docs/architecture.md, done once: a report (in the code base a module of
    fleetctl/analytics/, here a function of this test) and the command that shows it,
    registered by one decorator with the login it reads as, then run through Click."""
    await depot(db)

    async def vehicles_per_meter(conn: asyncpg.Connection) -> dict[str, object]:
        rows = await conn.fetch(
            "SELECT meter_id, count(*) FROM vehicle_meter_assignments GROUP BY 1 ORDER BY 1"
        )
        return {"meters": [{"meterId": r[0], "vehicles": r[1]} for r in rows]}

    def show(r: dict[str, list[dict[str, object]]], _out: Output) -> str:
        cells = [(str(m["meterId"]), str(m["vehicles"])) for m in r["meters"]]
        return render.table(("meter", "vehicles"), cells, right={1})

    @command(root, "vehicles-per-meter", role=Role.ANALYTICS, show=show)
    def vehicles_per_meter_command() -> Job:
        """Vehicles assigned to each meter."""
        return vehicles_per_meter

    runner = CliRunner()
    try:
        as_json = await asyncio.to_thread(
            runner.invoke, root, ["--database-url", analytics_url, "vehicles-per-meter", "--json"]
        )
        table = await asyncio.to_thread(
            runner.invoke, root, ["--database-url", analytics_url, "vehicles-per-meter"]
        )
        listed = await asyncio.to_thread(runner.invoke, root, ["--help"])
    finally:
        del root.commands["vehicles-per-meter"]
    assert as_json.exit_code == 0, as_json.output
    assert {"meterId": "M6", "vehicles": 2} in json.loads(as_json.output)["meters"]
    assert table.output.splitlines()[0].split() == ["meter", "vehicles"]
    assert "vehicles-per-meter  Vehicles assigned to each meter." in listed.output


async def test_the_wrong_login_or_database_is_one_line_saying_what_to_fix(
    db: asyncpg.Connection,
    database_url: str,
    ingest_url: str,
    pg_admin_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 24: a report as the ingest login, on an unmigrated or missing database, or as an
    unknown user: one line naming the cause and the fix, exit 1, never a traceback."""
    await depot(db)
    for url, args, wanted in (
        (ingest_url, ["fleet"], "this command needs FLEET_ANALYTICS_DATABASE_URL"),
        (ingest_url, ["assign", "V1", "M9"], "this command needs FLEET_ADMIN_DATABASE_URL"),
        (_with_db(pg_admin_url, "postgres"), ["current", "meters"], "run `fleetd migrate`"),
        (_with_db(pg_admin_url, "no_such_db"), ["fleet"], "no such database"),
        (as_user(database_url, "nobody"), ["fleet"], "database refused the login"),
    ):
        assert await fleetctl(url, *args) == 1, (url, args)
        err = capsys.readouterr().err
        assert wanted in err, err
        assert err.count("\n") == 1, err
