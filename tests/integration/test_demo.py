"""`make demo` (python -m fleetsim.demo) as a newcomer runs it, on a small fleet: without a
terminal it ends after the report; with --live (what a terminal gets) it keeps the system up,
the printed fleetctl commands work against it, and Ctrl-C removes everything."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, "-u", "-m", "fleetsim.demo", "--meters", "100", "--vehicles", "100"]
SMALL = ["--speed", "900"]  # the simulated hour in 4 s


def _listening(url: str) -> bool:
    port = int(re.search(r":(\d+)/", url).group(1))  # type: ignore[union-attr]
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}


def test_without_a_terminal_the_demo_ends_after_its_report() -> None:
    done = subprocess.run(
        [*DEMO, *SMALL],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env=_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    stored = re.search(r"fleetd stored ([\d,]+) of ([\d,]+) readings", out)
    assert stored is not None, out
    assert stored.group(1) == stored.group(2)
    assert "== fleet efficiency" in out
    assert "worst 10 vehicles" in out
    assert "  dashboard  http" not in out
    assert "Traceback" not in done.stderr
    pg_url = re.search(r"postgres\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    assert not _listening(pg_url)


def test_live_demo_serves_the_dashboard_and_the_printed_commands_then_removes_all() -> None:
    proc = subprocess.Popen(
        [*DEMO, *SMALL, "--live"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=_env(),
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "fleet-sim catches up with the clock" in line:
                break
        out = "".join(lines)
        url = re.search(r"dashboard\s+(\S+)", out).group(1)  # type: ignore[union-attr]
        token = url.split("#token=")[1]
        page = urllib.request.Request(url.split("#")[0] + "v1/analytics/fleet/summary")
        page.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(page, timeout=10) as answer:
            assert answer.status == 200
        export = re.search(r"export FLEET_DATABASE_URL=(\S+)", out).group(1)  # type: ignore[union-attr]
        commands = [ln.strip() for ln in lines if "fleetctl " in ln and "--config" not in ln]
        assert len(commands) == 3, out
        for command in commands:
            ran = subprocess.run(
                shlex.split(command),
                capture_output=True,
                text=True,
                cwd=REPO,
                env=_env() | {"FLEET_DATABASE_URL": export},
                timeout=60,
                check=False,
            )
            assert ran.returncode == 0, (command, ran.stderr)
            assert ran.stdout.strip(), command
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    assert "demo: stopped" in rest
    assert "Traceback" not in err
    assert not _listening(url)
    assert not _listening(re.search(r"postgres\s+(\S+)", out).group(1))  # type: ignore[union-attr]
