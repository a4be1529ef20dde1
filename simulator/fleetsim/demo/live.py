"""The demo's second part, in a terminal only: the system stays up (fleetd, `fleetctl serve` and
the simulator at real-time pace) with the dashboard's address and three `fleetctl` commands
printed, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fleetsim.runner import SimOptions, run_sim, status_line

BIN = Path(sys.executable).parent
CHILD_STOP_S = 15.0  # fleetd and serve exit within 10 s of SIGTERM


@contextlib.contextmanager
def child(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run a program of the venv for the duration of the block, then SIGTERM it and wait.

    It gets a process group of its own: a Ctrl-C at the terminal reaches the demo alone, which
    stops the simulator first and then its children in order, instead of all at once."""
    proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], env=os.environ | env, process_group=0)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=CHILD_STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Poll `url` until it answers 200; fail at once when `proc` (its server) has exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{Path(str(proc.args[0])).name} exited with {proc.returncode}")  # type: ignore[index]
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as answer,  # noqa: S310 - our own loopback
        ):
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f} s")
        time.sleep(0.2)


@dataclass(frozen=True)
class Dashboard:
    """Where `fleetctl serve` listens and the fleetctl settings file that reaches the database."""

    addr: str
    token: str
    config: Path

    @property
    def url(self) -> str:
        """The page, with the token in the fragment (the page keeps it and clears the bar)."""
        return f"http://{self.addr}/#token={self.token}"


def write_config(path: Path, database_url: str, addr: str, token: str) -> Path:
    """fleetctl's settings file for the demo (the keys are the variables' names)."""
    path.write_text(
        "# fleetctl settings of `make demo` (FLEET_* variables override them)\n"
        f'database_url = "{database_url}"\napi_addr = "{addr}"\napi_token = "{token}"\n'
    )
    return path


def commands(vehicle: str | None) -> list[str]:
    """Three fleetctl commands that work against the demo's database (FLEET_DATABASE_URL set)."""
    fleetctl = BIN / "fleetctl"
    with contextlib.suppress(ValueError):
        fleetctl = fleetctl.relative_to(Path.cwd())
    return [
        f"{fleetctl} fleet --hours 2",
        f"{fleetctl} performance {vehicle or 'VEHICLE-00001'} --hours 2",
        f"{fleetctl} rejects",
    ]


def print_live(board: Dashboard, fleetd_addr: str, vehicle: str | None, database_url: str) -> None:
    """What a newcomer can do while the demo runs (each line fits 80 columns but the URLs)."""
    print("\n== the system stays up: Ctrl-C stops it and removes everything ==")
    print(f"  dashboard  {board.url}")
    print(f"  fleetd     http://{fleetd_addr}/metrics  (and /healthz, /readyz)")
    print("\n  try, in another terminal in this directory:")
    print(f"    export FLEET_DATABASE_URL={database_url}")
    for line in commands(vehicle):
        print(f"    {line}")
    print("  (or, instead of the variable, the same settings as a file:")
    print(f"   fleetctl --config {board.config} ...)")
    print(
        "\n  fleet-sim catches up with the clock, then publishes in real time"
        "\n  (every device once a minute):\n"
    )
    sys.stdout.flush()


async def keep_publishing(options: SimOptions) -> None:
    """Run the simulator until SIGINT or SIGTERM; a second one gives up at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await run_sim(options, stop=stop, on_status=status_line)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        sys.stderr.write("\n")
