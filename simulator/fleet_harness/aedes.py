"""A throwaway aedes broker (Node.js, from npm) on a free port: a second MQTT implementation
beside Mosquitto, speaking only MQTT 3.1.1, with no window toward subscribers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

from fleet_harness.ports import free_port, wait_for_port
from fleet_harness.server import ThrowawayServer

REPO_ROOT = Path(__file__).resolve().parents[2]
AEDES_DIR = REPO_ROOT / "tests" / "brokers" / "aedes"
INSTALL_HINT = f"npm ci --no-audit --no-fund --prefix {AEDES_DIR} (make test does it)"


class AedesServer(ThrowawayServer):
    """`node server.mjs PORT` from tests/brokers/aedes, its npm packages installed there.
    `refuse_subscribe`: filters starting with it are refused at SUBSCRIBE, with a SUBACK 0x80
    (`refuse_by="suback"`) or by closing the connection ("close")."""

    def __init__(
        self,
        *,
        port: int | None = None,
        refuse_subscribe: str | None = None,
        refuse_by: Literal["suback", "close"] = "suback",
    ) -> None:
        self.port = port or free_port()
        self.refuse_subscribe = refuse_subscribe
        self.refuse_by = refuse_by
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    def url(self) -> str:
        """mqtt:// URL of this broker (anonymous)."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> AedesServer:
        """Start the broker; raise with the install command if aedes is missing."""
        node = shutil.which("node")
        if node is None:
            raise FileNotFoundError(
                "node not found; install it: sudo apt-get install -y nodejs npm"
            )
        if not (AEDES_DIR / "node_modules" / "aedes").is_dir():
            raise FileNotFoundError(f"aedes is not installed; run: {INSTALL_HINT}")
        self._log = Path(tempfile.mkstemp(prefix="fleet-aedes-", suffix=".log")[1])
        with self._log.open("wb") as out:
            self._proc = subprocess.Popen(
                [node, "server.mjs", str(self.port)],
                cwd=AEDES_DIR,
                stdout=out,
                stderr=out,
                env=os.environ | self._refusal_env(),
            )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"aedes did not start: {self._log.read_text()[-2000:]}") from None
        return self

    def _refusal_env(self) -> dict[str, str]:
        if self.refuse_subscribe is None:
            return {}
        return {"AEDES_REFUSE_SUBSCRIBE": self.refuse_subscribe, "AEDES_REFUSE_BY": self.refuse_by}

    def stop(self) -> None:
        """Stop the broker (its in-memory sessions go with it) and remove its log."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None
