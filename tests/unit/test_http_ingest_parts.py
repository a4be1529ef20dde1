"""HTTP ingest's pure parts: the body shapes into items, the tokens file, the patterns a token
may write and its rate, each request's outcomes (the server itself: test_http_ingest)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleetd.ingest.http_items import BodyError, decode_item, elements
from fleetd.ingest.tickets import Outcome, Ticket
from fleetd.ingest.tokens import Token, TokensFileError, find_token, load_tokens
from fleetdb.ingest.messages import MeterReading, Rejected, VehicleReading

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BOUNDS = {"max_future": timedelta(minutes=5), "max_past": timedelta(days=3650)}
METER = {
    "meterId": "M1",
    "kwhConsumedAc": 1.0,
    "voltage": 230.0,
    "timestamp": "2026-11-23T11:00:00Z",
}
VEHICLE = {
    "vehicleId": "V1",
    "soc": 50,
    "kwhDeliveredDc": 0.5,
    "batteryTemp": 25,
    "timestamp": "2026-11-23T11:00:00Z",
}


def test_the_body_shapes() -> None:
    assert elements(b'{"meterId": "M1"}') == [{"meterId": "M1"}]
    assert elements(b"[1, 2]") == [1, 2]
    assert elements(b'{"data": [1]}') == [1]
    assert elements(b"[]") == []
    for bad, reason in ((b"{x", "not valid JSON"), (b"\xff", "not UTF-8"), (b"3", "must be")):
        with pytest.raises(BodyError, match=reason):
            elements(bad)


def test_items_take_their_kind_from_the_route_the_type_or_their_id() -> None:
    _, item = decode_item(METER, None, NOW, **BOUNDS)
    assert isinstance(item, MeterReading)
    _, item = decode_item({"type": "VEHICLE", "payload": VEHICLE}, None, NOW, **BOUNDS)
    assert isinstance(item, VehicleReading)
    cases = [
        (VEHICLE, "meter", "meterId: is required"),
        ({"type": "METER", "payload": VEHICLE}, "vehicle", "type: meter does not match"),
        ({"type": "CHARGER", "payload": METER}, None, "type: must be METER or VEHICLE"),
        ({"voltage": 1}, None, "payload: needs meterId or vehicleId"),
        (METER | {"voltage": -1}, None, "voltage: must be > 0"),
        (METER | {"meterId": 7}, None, "meterId: must be a string"),
        (METER | {"meterId": "M/1"}, None, "meterId: must match [A-Za-z0-9_.:-]{1,64} (got 'M/1')"),
        (VEHICLE | {"vehicleId": ""}, None, "vehicleId: must match"),
    ]
    for element, kind, reason in cases:
        _, item = decode_item(element, kind, NOW, **BOUNDS)  # type: ignore[arg-type]
        assert isinstance(item, Rejected), element
        assert item.reason.startswith(reason), (element, item.reason)


def test_the_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# comment\n\naaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbb METER-0*, VEHICLE-0*\n")
    full, limited = load_tokens(path)
    assert full.allows("anything")
    assert limited.patterns == ("METER-0*", "VEHICLE-0*")
    assert limited.allows("METER-00001")
    assert not limited.allows("METER-10000")
    assert find_token([full, limited], "Bearer bbbbbbbbbbbbbbbb") is limited
    assert find_token([full, limited], "Bearer bbbbbbbbbbbbbbbX") is None
    assert find_token([full, limited], "aaaaaaaaaaaaaaaa") is None
    assert "bbbb" not in repr(limited)  # never shown
    path.write_text("cccccccccccccccc\tMETER-0*\n")  # a tab separates too
    (tabbed,) = load_tokens(path)
    assert (tabbed.secret, tabbed.patterns) == (b"cccccccccccccccc", ("METER-0*",))
    path.write_text("short\n")
    with pytest.raises(TokensFileError, match="line 1") as exc:
        load_tokens(path)
    assert "short" not in str(exc.value)
    with pytest.raises(TokensFileError, match="cannot read"):
        load_tokens(tmp_path / "missing")


def test_a_tokens_rate_is_a_bucket_of_one_second() -> None:
    token = Token(1, b"x" * 16)
    assert token.take(100, 100, now=10.0) == 0
    assert token.take(1, 100, now=10.0) == pytest.approx(0.01)
    assert token.take(50, 100, now=10.5) == 0  # half a second refilled 50
    assert token.take(500, 100, now=100.0) == 0  # one request larger than a second's worth
    assert token.take(10**6, 0) == 0  # no limit


async def test_a_ticket_is_done_when_every_item_is_settled() -> None:
    ticket = Ticket(2)
    ticket.settle(1, Outcome("stored"))
    waiter = asyncio.create_task(ticket.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    ticket.settle(0, Outcome("rejected", "why"))
    ticket.settle(0, Outcome("stored"))  # once only
    assert await waiter == [Outcome("rejected", "why"), Outcome("stored")]


def test_a_tokens_file_fleetd_cannot_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # fleetd.cli.main itself is not called here: it configures the process's logging.
    from fleetd.cli import EXIT_CONFIG, one_line  # noqa: PLC0415

    with pytest.raises(TokensFileError) as exc:
        load_tokens(tmp_path / "missing")
    assert one_line(exc.value) == (
        EXIT_CONFIG,
        f"invalid configuration: FLEET_INGEST_TOKENS_FILE: cannot read {tmp_path / 'missing'}: "
        f"[Errno 2] No such file or directory: '{tmp_path / 'missing'}'",
    )
