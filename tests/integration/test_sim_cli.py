"""fleet-sim as operators run it: a real process, stopped with SIGINT, prints its summary."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleet_harness import MosquittoServer

pytestmark = pytest.mark.integration

FLEET_SIM = str(Path(sys.executable).parent / "fleet-sim")


def test_sigint_stops_cleanly_with_the_summary(broker: MosquittoServer) -> None:
    proc = subprocess.Popen(
        [
            FLEET_SIM,
            "run",
            "--meters",
            "100",
            "--vehicles",
            "100",
            "--interval",
            "2",
            "--mqtt-url",
            broker.url(),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4.0)  # two intervals of real-time publishing
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["interrupted"] is True
    assert summary["sent"] > 0
    assert summary["acked"] == summary["sent"]  # QoS 1: everything sent was acknowledged
    assert "fleet-sim:" in err


def test_bad_option_is_one_line_exit_2() -> None:
    result = subprocess.run(
        [FLEET_SIM, "run", "--vehicles-per-meter", "0"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--vehicles-per-meter" in result.stderr
