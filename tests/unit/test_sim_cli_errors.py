"""fleet-sim's errors are one line with a distinct exit code, never a traceback (issue 24);
--debug, before or after the command, shows the traceback instead. No server needed: port 1 on
loopback refuses at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetsim.cli import main
from fleetsim.publisher import PublisherError

REFUSED_MQTT = "mqtt://127.0.0.1:1"
REFUSED_DB = "postgresql://sim:hunter2@127.0.0.1:1/fleet"


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["run", "--mqtt-url", "foo://x"], 2, "--mqtt-url foo://x: must start with mqtt://"),
        (["run", "--mqtt-url", "mqtt://h:99999"], 2, "--mqtt-url mqtt://h:99999: port out of"),
        (["run", "--mqtt-url", "mqtt://u:pw@[::1"], 2, "--mqtt-url <unparseable url>"),
        (["run", "--mqtt-url", "mqtt://"], 2, "no host"),
        (["run", "--truth", "/nonexistent/t.json"], 2, "--truth /nonexistent/t.json: no such"),
        (["run", "--speed", "-1"], 2, "--speed must be a positive number"),
        (["run", "--database-url", "foo://x"], 2, "--database-url foo://x: invalid DSN"),
        (["run", "--mqtt-url", REFUSED_MQTT], 1, "cannot connect to 127.0.0.1:1"),
        (
            ["run", "--mqtt-url", REFUSED_MQTT, "--database-url", REFUSED_DB],
            1,
            "database postgresql://sim:***@127.0.0.1:1/fleet: ",
        ),
        (
            ["backfill", "--days", "1", "--direct", "--database-url", REFUSED_DB],
            1,
            "database postgresql://sim:***@127.0.0.1:1/fleet: ",
        ),
    ],
)
def test_operator_errors_are_one_line(
    argv: list[str], code: int, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("fleet-sim: ")
    assert says in last, err
    assert "Traceback" not in err
    assert "hunter2" not in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where: str) -> None:
    run = ["run", "--mqtt-url", REFUSED_MQTT]
    argv = ["--debug", *run] if where == "before" else [*run, "--debug"]
    with pytest.raises(PublisherError):
        main(argv)


def test_the_truth_directory_is_checked_before_the_run(tmp_path: Path) -> None:
    """A run of hours must not end in 'cannot write the truth file'."""
    assert main(["run", "--truth", str(tmp_path / "missing" / "t.json")]) == 2


def test_a_typod_variable_is_named_before_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As fleetd and fleetctl do: FLEET_MQTT_URLS would otherwise leave the run on the default
    broker without a word."""
    monkeypatch.setenv("FLEET_MQTT_URLS", "mqtt://broker.example:1883")
    assert main(["run", "--mqtt-url", REFUSED_MQTT]) == 1
    assert (
        "fleet-sim: warning: unknown variable FLEET_MQTT_URLS is ignored "
        "(did you mean FLEET_MQTT_URL?)"
    ) in capsys.readouterr().err.splitlines()
