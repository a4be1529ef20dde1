"""A throwaway RabbitMQ node with its MQTT plugin on a free port (the bench's small-window stage).

RabbitMQ 3.10 (Debian bookworm) speaks MQTT 3.1.1 only and keeps exactly `mqtt.prefetch`
unacknowledged messages in flight toward a subscriber: a strict broker window, which Mosquitto
2.0.11 is not once acks flow (eclipse-mosquitto#2301). Starting a node takes ~10 s.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from fleet_harness.ports import free_port, wait_for_port
from fleet_harness.server import ThrowawayServer

INSTALL_HINT = "sudo apt-get install -y rabbitmq-server"


class RabbitMqStartError(RuntimeError):
    """The node did not come up (its output's tail is in the message)."""


def find_rabbitmq() -> str | None:
    """The rabbitmq-server script, or None when RabbitMQ is not installed."""
    return shutil.which("rabbitmq-server") or (
        "/usr/sbin/rabbitmq-server" if Path("/usr/sbin/rabbitmq-server").exists() else None
    )


def _password_hash(password: str) -> str:
    # rabbit_password_hashing_sha256: base64 of a 4-byte salt and SHA-256(salt + password).
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


class RabbitMqServer(ThrowawayServer):
    """A private node: no AMQP listener, MQTT on a free loopback port, anonymous access; or,
    with `users`, password logins only, each user's MQTT reads limited by a topic permission
    (`topic_read`: user -> regex on the routing key, where MQTT's / is . and + is *; default
    any), as RabbitMQ checks it at SUBSCRIBE."""

    def __init__(
        self,
        *,
        prefetch: int = 10,
        users: dict[str, str] | None = None,
        topic_read: dict[str, str] | None = None,
    ) -> None:
        self.prefetch = prefetch
        self.users = users
        self.topic_read = topic_read or {}
        self.port = free_port()
        self._dist_port = free_port()
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str | None = None) -> str:
        """mqtt:// URL of this node's MQTT listener, with `user`'s credentials if given."""
        if user is not None and self.users is not None:
            return f"mqtt://{user}:{self.users[user]}@127.0.0.1:{self.port}"
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> RabbitMqServer:
        """Write the node's config into a temp dir and start it (raises if not installed)."""
        server = find_rabbitmq()
        if server is None:
            raise FileNotFoundError(f"rabbitmq-server not found; install it: {INSTALL_HINT}")
        self._tmp = tmp = Path(tempfile.mkdtemp(prefix="fleet-rabbitmq-"))
        conf = [
            "listeners.tcp = none",
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.port}",
            f"mqtt.prefetch = {self.prefetch}",
            "loopback_users = none",
        ]
        if self.users is None:
            conf += [
                "mqtt.allow_anonymous = true",
                "mqtt.default_user = guest",
                "mqtt.default_pass = guest",
            ]
        else:
            (tmp / "definitions.json").write_text(json.dumps(self._definitions()))
            conf += ["mqtt.allow_anonymous = false", f"load_definitions = {tmp}/definitions.json"]
        (tmp / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
        (tmp / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        for sub in ("mnesia", "log"):
            (tmp / sub).mkdir()
        if os.geteuid() == 0:
            # The rabbitmq-server script drops root to the rabbitmq user.
            pw = pwd.getpwnam("rabbitmq")
            for path in [tmp, *tmp.rglob("*")]:
                os.chown(path, pw.pw_uid, pw.pw_gid)
        env = os.environ | {
            "RABBITMQ_NODENAME": f"fleet{self.port}@localhost",
            "RABBITMQ_DIST_PORT": str(self._dist_port),
            "RABBITMQ_CONFIG_FILE": str(tmp / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(tmp / "mnesia" / "feature_flags"),
            "RABBITMQ_LOG_BASE": str(tmp / "log"),
            "RABBITMQ_PID_FILE": str(tmp / "pid"),
        }
        with (tmp / "server.out").open("wb") as out:
            self._proc = subprocess.Popen(
                [server], env=env, stdout=out, stderr=out, start_new_session=True
            )
        try:
            wait_for_port(self.port, timeout_s=60)
        except TimeoutError:
            text = (tmp / "server.out").read_text(errors="replace")[-2000:]
            self.stop()
            raise RabbitMqStartError(f"rabbitmq did not start: {text}") from None
        return self

    def _definitions(self) -> dict[str, object]:
        assert self.users is not None
        users = self.users.items()
        return {
            "vhosts": [{"name": "/"}],
            "users": [
                {
                    "name": user,
                    "password_hash": _password_hash(password),
                    "hashing_algorithm": "rabbit_password_hashing_sha256",
                    "tags": "",
                }
                for user, password in users
            ],
            "permissions": [
                {"user": user, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
                for user, _ in users
            ],
            "topic_permissions": [
                {
                    "user": user,
                    "vhost": "/",
                    "exchange": "amq.topic",
                    "write": ".*",
                    "read": self.topic_read.get(user, ".*"),
                }
                for user, _ in users
            ],
        }

    def stop(self) -> None:
        """Stop the node (its whole process group) and remove its directory."""
        # Run as root, rabbitmq-server re-executes itself as the rabbitmq user in a session of
        # its own: killing our child's group left the node running (one node per bench run).
        # The node's pid file names the Erlang VM; its group holds the node's helpers.
        node = self._node_pid()
        if node is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(node), signal.SIGKILL)
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
            self._proc = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _node_pid(self) -> int | None:
        """The Erlang VM's pid from the node's pid file, None before it wrote one."""
        if self._tmp is None:
            return None
        try:
            return int((self._tmp / "pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
