"""fleetctl's command line without a database: every command declares its role, --json is
accepted on both sides of the command, usage errors are one line, a closed pipe ends quietly,
and every program answers --version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from fleetctl.cli import main, root
from fleetctl.cli.app import RoleCommand
from fleetctl.roles import Role

BIN = Path(sys.executable).parent


def _leaves(group: click.Group, path: str) -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            found |= _leaves(cmd, f"{path} {name}")
        else:
            found[f"{path} {name}"] = cmd
    return found


def test_every_command_that_connects_declares_its_role() -> None:
    roles = {
        path: cmd.role
        for path, cmd in _leaves(root, "fleetctl").items()
        if isinstance(cmd, RoleCommand)
    }
    assert set(_leaves(root, "fleetctl")) - set(roles) == {"fleetctl check-config"}
    assert roles["fleetctl fleet"] is Role.ANALYTICS
    assert roles["fleetctl serve"] is Role.ANALYTICS
    assert roles["fleetctl alerts run"] is Role.ADMIN
    assert roles["fleetctl rejects replay"] is Role.ADMIN
    assert roles["fleetctl assign"] is roles["fleetctl assignments add"] is Role.ADMIN
    assert roles["fleetctl partitions drop-older-than"] is Role.OWNER
    assert roles["fleetctl compact"] is Role.OWNER


@pytest.mark.parametrize(
    "argv",
    [
        ["fleet", "--bogus"],
        ["nope"],
        ["fleet", "--hours", "many"],
        ["fleet", "--sort", "colour"],
        ["current", "trucks"],
        ["partitions", "shrink"],
    ],
)
def test_usage_errors_are_one_line_with_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fleetctl: ")
    assert err.count("\n") == 1


def test_a_window_error_is_a_usage_error_before_connecting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "postgresql://nobody@127.0.0.1:1/none"  # never reached
    assert main(["--database-url", url, "fleet", "--hours", "-1"]) == 2
    assert capsys.readouterr().err == (
        "fleetctl: --hours must be > 0 (got -1.0) (see fleetctl fleet --help)\n"
    )
    assert main(["--database-url", "mysql://x", "fleet"]) == 2
    assert "--database-url: must be a postgresql:// URL" in capsys.readouterr().err


def test_json_is_accepted_after_the_command_too() -> None:
    for path, cmd in _leaves(root, "fleetctl").items():
        if isinstance(cmd, RoleCommand) and path not in ("fleetctl serve", "fleetctl alerts run"):
            assert "--json" in {o for p in cmd.params for o in p.opts}, path


@pytest.mark.parametrize(
    "argv",
    [
        ["alerts"],
        ["alerts", "--json"],
        ["rejects", "--field", "soc", "--limit", "1"],
        ["assignments", "V1"],
        ["--json", "partitions", "list"],
        ["fleet", "--json", "--limit", "3"],
    ],
)
def test_the_documented_spellings_reach_the_database(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`alerts`, `rejects --field soc`, `assignments V1` run their group's default command."""
    assert main(["--database-url", "postgresql://u:secret@127.0.0.1:1/none", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fleetctl: database unreachable at postgresql://u:***@127.0.0.1:1/")
    assert err.count("\n") == 1


@pytest.mark.parametrize("program", ["fleetctl", "fleetd", "fleet-sim"])
def test_every_program_answers_version(program: str) -> None:
    out = subprocess.run(
        [str(BIN / program), "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().endswith("0.1.0"), out.stdout


def test_a_reader_that_goes_away_ends_the_output_quietly() -> None:
    """`fleetctl check-config | head -c 0`: no BrokenPipeError, no traceback, exit 0."""
    proc = subprocess.Popen(
        [str(BIN / "fleetctl"), "check-config"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"FLEET_DATABASE_URL": "postgresql://db/fleet", "PATH": "/usr/bin:/bin"},
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the first byte
    _, err = proc.communicate(timeout=30)
    assert err == b""
    assert proc.returncode == 0
