"""A throwaway Mosquitto broker with the repo's mosquitto.conf settings on a free port."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from fleet_harness.ports import free_port, wait_for_port
from fleet_harness.server import ThrowawayServer

REPO_ROOT = Path(__file__).resolve().parents[2]
# Lines of the production template that name machine paths or the listener; the harness
# supplies its own. Everything else (queue sizes, inflight, persistence) is kept as is.
_REPLACED = (
    "listener",
    "persistence_location",
    "password_file",
    "acl_file",
    "log_dest",
    "allow_anonymous",
    "certfile",
    "keyfile",
    "cafile",
    "tls_version",
    "pid_file",
    "user",
)


# Debian's mosquitto package ships the dynamic security plugin, which checks every SUBSCRIBE
# against its roles (the acl_file of 2.0.11 grants any filter and checks each message instead).
_DYNSEC_PLUGINS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
)
DynsecAcl = tuple[str, str]
"""(acltype, topic) of a dynamic security role: subscribePattern, publishClientSend, ..."""


def find_dynsec_plugin() -> str | None:
    """The dynamic security plugin's path, or None where it is not installed."""
    return next((p for p in _DYNSEC_PLUGINS if Path(p).exists()), None)


def _dynsec_client(user: str, password: str) -> dict[str, object]:
    # The plugin's own password hash: PBKDF2-HMAC-SHA512 of the password, 101 iterations.
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return {
        "username": user,
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": 101,
        "roles": [{"rolename": user}],
    }


def find_mosquitto() -> str:
    """Locate the mosquitto broker binary (Debian installs it in /usr/sbin)."""
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if not found:
        raise FileNotFoundError(
            "mosquitto not found; install it: sudo apt-get install -y mosquitto"
        )
    return found


class MosquittoServer(ThrowawayServer):
    """A private broker. `users` turns on password auth and the repo's ACL (config/mosquitto.acl),
    `acl_extra` lines appended to it (a gateway's grant, as its comments show), or `acl` instead
    of it (an older ACL); without `users` anonymous clients may do anything (the dev variant,
    loopback only). `dynsec` puts the users behind the dynamic security plugin instead, each
    with a role of its own holding its (acltype, topic) grants: a broker that refuses at
    SUBSCRIBE what the role does not grant."""

    def __init__(
        self,
        *,
        port: int | None = None,
        users: dict[str, str] | None = None,
        conf_path: Path | None = None,
        extra_conf: str = "",
        acl_extra: str = "",
        acl: str | None = None,
        dynsec: dict[str, list[DynsecAcl]] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.users = users
        self._conf_src = conf_path or Path(
            os.environ.get("FLEET_MOSQUITTO_CONF", REPO_ROOT / "mosquitto.conf")
        )
        self._extra = extra_conf
        self._acl_extra = acl_extra
        self._acl = acl
        self._dynsec = dynsec
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str | None = None) -> str:
        """mqtt:// URL of this broker, with the credentials of `user` when auth is on."""
        if user is not None and self.users is not None:
            return f"mqtt://{user}:{self.users[user]}@127.0.0.1:{self.port}"
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self._tmp is not None
        return self._tmp / "mosquitto.log"

    def _write_config(self) -> Path:
        assert self._tmp is not None
        # A setting in extra_conf replaces the template's line (Mosquitto keeps the first).
        replaced = {*_REPLACED, *(line.split()[0] for line in self._extra.splitlines() if line)}
        kept = [
            line
            for line in self._conf_src.read_text().splitlines()
            if line.split(maxsplit=1)[:1] and line.split()[0] not in replaced
        ]
        own = [
            f"listener {self.port} 127.0.0.1",
            f"persistence_location {self._tmp}/",
            f"log_dest file {self.log_path}",
        ]
        if self.users is None:
            own.append("allow_anonymous true")
        elif self._dynsec is not None:
            own += self._dynsec_config()
        else:
            passwd = self._tmp / "passwd"
            passwd.touch()
            for user, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwd), user, password],
                    check=True,
                    capture_output=True,
                )
            acl = self._acl
            if acl is None:
                acl = (REPO_ROOT / "config" / "mosquitto.acl").read_text()
            (self._tmp / "acl").write_text(acl + "\n" + self._acl_extra)
            own += ["allow_anonymous false", f"password_file {passwd}", f"acl_file {self._tmp}/acl"]
        conf = self._tmp / "mosquitto.conf"
        conf.write_text("\n".join([*kept, *own, self._extra, ""]))
        return conf

    def _dynsec_config(self) -> list[str]:
        assert self._tmp is not None
        assert self.users is not None
        assert self._dynsec is not None
        plugin = find_dynsec_plugin()
        if plugin is None:
            raise FileNotFoundError("mosquitto_dynamic_security.so not found (Debian: mosquitto)")
        roles = [
            {
                "rolename": user,
                "acls": [
                    {"acltype": kind, "topic": topic, "allow": True}
                    for kind, topic in self._dynsec.get(user, [])
                ],
            }
            for user in self.users
        ]
        config = {
            "clients": [_dynsec_client(u, p) for u, p in self.users.items()],
            "roles": roles,
            "groups": [],
            "defaultACLAccess": {
                "publishClientSend": False,
                "publishClientReceive": True,
                "subscribe": False,
                "unsubscribe": True,
            },
        }
        path = self._tmp / "dynamic-security.json"
        path.write_text(json.dumps(config, indent=1))
        return ["allow_anonymous false", f"plugin {plugin}", f"plugin_opt_config_file {path}"]

    def start(self) -> MosquittoServer:
        """Write the config into a temp dir and start the broker."""
        self._tmp = Path(tempfile.mkdtemp(prefix="fleet-mqtt-"))
        self._conf = self._write_config()
        if os.geteuid() == 0:
            # Mosquitto drops root privileges to the `mosquitto` user before opening files.
            pw = pwd.getpwnam("mosquitto")
            for path in [self._tmp, *self._tmp.iterdir()]:
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self.start_server()
        return self

    def start_server(self) -> None:
        """(Re)start the broker process on the same port and persistence directory."""
        self._proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self._conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Like PostgreSQL's pg_ctl (setsid): a Ctrl-C at the terminal reaches the program
            # that owns the broker, which stops it in order (the demo: simulator, fleetd, then
            # the broker), instead of killing it under its clients.
            process_group=0,
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise RuntimeError(f"mosquitto did not start: {log[-2000:]}") from None

    def stop_server(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker process, keeping its persistence (SIGTERM saves the queue)."""
        if self._proc is None:
            return
        self._proc.send_signal(sig)
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        time.sleep(0.05)

    def stop(self) -> None:
        """Stop the broker and remove its directory."""
        self.stop_server(signal.SIGKILL)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
