"""Make SIGTERM unwind like Ctrl-C, so throwaway servers are stopped and their temp dirs removed.

Python's default SIGTERM action ends the process without running `finally` blocks or context
managers; `timeout`, CI runners and systemd send SIGTERM, which would leave a PostgreSQL and a
Mosquitto running behind a killed demo, benchmark or test run.
"""

from __future__ import annotations

import signal
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def unwind_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt in this (main) thread."""
    signal.signal(signal.SIGTERM, _interrupt)
