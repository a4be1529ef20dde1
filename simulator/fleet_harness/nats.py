"""A throwaway three-node NATS cluster with MQTT and JetStream, on free loopback ports.

NATS speaks MQTT 3.1.1 only, and keeps MQTT sessions, subscriptions and retained and QoS 1
messages in JetStream streams: it needs a `server_name` per node and JetStream, here with a store
directory per node and every MQTT stream and consumer replicated to all three nodes, so one node
can be killed without losing a session or an acked message. The MQTT block's defaults
(`max_ack_pending` 1,024 per subscription, `ack_wait` 30 s) throttle a subscriber that acks
after a database commit; `mqtt_options` overrides them (docs/brokers.md has the figures).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from fleet_harness.ports import free_port, wait_for_port
from fleet_harness.server import ThrowawayServer

# What fleetd needs from the MQTT block of a NATS cluster (docs/brokers.md):
TUNED_MQTT = {
    "stream_replicas": "3",
    "consumer_replicas": "3",
    # Unacked messages toward one subscription (default 1,024); fleetd's three filters together
    # may hold at most 65,535 (docs/brokers.md).
    "max_ack_pending": "20000",
    "ack_wait": '"5s"',  # redelivery of a message not acked by then (default 30 s)
}


def _which() -> str | None:
    return shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )


def nats_unavailable() -> str | None:
    """Why no NATS cluster can be started here (a skip reason), or None when it can."""
    if _which() is None:
        return "nats-server is not installed (Debian: apt-get install -y nats-server)"
    return None


def find_nats_server() -> str:
    """Locate the nats-server binary (Debian installs it in /usr/sbin)."""
    found = _which()
    if not found:
        raise FileNotFoundError(
            "nats-server not found; install it: sudo apt-get install -y nats-server"
        )
    return found


@dataclass
class NatsNode:
    """One node: its ports, and its process while it runs."""

    name: str
    client_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def url(self, credentials: str = "") -> str:
        """mqtt:// URL of this node's MQTT listener (anonymous, or `credentials` user:pass)."""
        at = f"{credentials}@" if credentials else ""
        return f"mqtt://{at}127.0.0.1:{self.mqtt_port}"


class NatsCluster(ThrowawayServer):
    """Three (or `size`) nodes routed to each other, each with JetStream and an MQTT listener.
    With `users`, password logins only, each allowed to subscribe to its `subscribe` subjects
    (NATS subjects: MQTT's / is . and + is *; default any), as NATS checks them at SUBSCRIBE."""

    def __init__(
        self,
        *,
        size: int = 3,
        mqtt_options: dict[str, str] | None = None,
        users: dict[str, str] | None = None,
        subscribe: dict[str, list[str]] | None = None,
    ) -> None:
        self.nodes = [NatsNode(f"n{i + 1}") for i in range(size)]
        self.mqtt_options = TUNED_MQTT if mqtt_options is None else mqtt_options
        self.users = users
        self.subscribe = subscribe or {}
        self._tmp: Path | None = None

    def urls(self, user: str | None = None) -> list[str]:
        """The MQTT URLs of every node, in order (what FLEET_MQTT_URL lists), logged in as
        `user` when given."""
        login = f"{user}:{self.users[user]}" if user is not None and self.users else ""
        return [node.url(login) for node in self.nodes]

    def _authorization(self) -> str:
        if not self.users:
            return ""
        entries = []
        for user, password in self.users.items():
            allowed = self.subscribe.get(user, [">"])
            subjects = ", ".join(json.dumps(s) for s in allowed)
            entries.append(
                f"    {{user: {json.dumps(user)}, password: {json.dumps(password)}, "
                f'permissions: {{subscribe: {{allow: [{subjects}]}}, publish: {{allow: [">"]}}}}}}'
            )
        return "authorization {\n  users = [\n" + ",\n".join(entries) + "\n  ]\n}\n"

    def log_path(self, node: NatsNode) -> Path:
        """Where `node` logs (kept until stop())."""
        assert self._tmp is not None
        return self._tmp / f"{node.name}.log"

    def _config(self, node: NatsNode) -> str:
        assert self._tmp is not None
        routes = ", ".join(
            f"nats://127.0.0.1:{other.cluster_port}" for other in self.nodes if other is not node
        )
        mqtt = "\n".join(f"  {key}: {value}" for key, value in self.mqtt_options.items())
        return f"""server_name: {node.name}
listen: 127.0.0.1:{node.client_port}
http: 127.0.0.1:{node.http_port}
jetstream {{
  store_dir: "{self._tmp / node.name}"
}}
cluster {{
  name: fleet
  listen: 127.0.0.1:{node.cluster_port}
  routes: [{routes}]
}}
mqtt {{
  listen: 127.0.0.1:{node.mqtt_port}
{mqtt}
}}
{self._authorization()}"""

    def start(self) -> NatsCluster:
        """Write the configs, start every node, and wait until JetStream is up on each."""
        self._tmp = Path(tempfile.mkdtemp(prefix="fleet-nats-"))
        try:
            for node in self.nodes:
                self.start_node(node, wait=False)
            for node in self.nodes:
                self._wait_ready(node)
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, node: NatsNode, *, wait: bool = True) -> None:
        """(Re)start one node with its own store directory."""
        assert self._tmp is not None
        conf = self._tmp / f"{node.name}.conf"
        conf.write_text(self._config(node))
        node.proc = subprocess.Popen(
            [find_nats_server(), "-c", str(conf), "-l", str(self.log_path(node))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if wait:
            self._wait_ready(node)

    def _wait_ready(self, node: NatsNode, timeout_s: float = 60.0) -> None:
        # /healthz answers "ok" once the node's JetStream is current with the cluster (a meta
        # leader elected); before that, an MQTT CONNECT is refused or hung up on.
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(TimeoutError):
            wait_for_port(node.mqtt_port, timeout_s=timeout_s)
        while not _healthy(node.http_port):
            if time.monotonic() > deadline:
                log = self.log_path(node)
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"NATS node {node.name} not ready in {timeout_s:.0f} s: {tail}")
            time.sleep(0.2)

    def kill_node(self, node: NatsNode) -> None:
        """kill -9 one node (its store directory stays, as a crashed machine's disk would)."""
        if node.proc is not None:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait()
            node.proc = None

    def stop(self) -> None:
        """Kill every node and remove the store directories and logs."""
        for node in self.nodes:
            self.kill_node(node)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _healthy(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2) as resp:
            return bool(json.loads(resp.read()).get("status") == "ok")
    except (OSError, ValueError):
        return False
