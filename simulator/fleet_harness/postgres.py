"""A throwaway PostgreSQL cluster: initdb + pg_ctl in a temp dir on a free loopback port."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from fleet_harness.ports import free_port
from fleet_harness.server import ThrowawayServer

_PORT_LINE = re.compile(r"^port = \d+$")


def find_pg_bin(name: str) -> str:
    """Locate a PostgreSQL server binary: PATH first, then Debian's versioned directories."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0,
    )
    if not candidates:
        raise FileNotFoundError(
            f"{name} not found; install PostgreSQL: sudo apt-get install -y postgresql"
        )
    return candidates[-1]


class PostgresServer(ThrowawayServer):
    """A private PostgreSQL server. Use as a context manager or call start()/stop().

    PostgreSQL refuses to run as root, so when root the cluster belongs to the `postgres` user
    (created by Debian's package) and every server command runs as that user.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        keep_dir: Path | None = None,
        standby_of: PostgresServer | None = None,
        listen: tuple[str, ...] = ("127.0.0.1",),
        trust: tuple[str, ...] = (),
    ) -> None:
        self.port = port or free_port()
        # standby_of: a streaming hot standby of that (running) server instead of a new cluster.
        self._primary = standby_of
        # keep_dir: a cluster kept between runs (benchmark datasets); reused when it exists.
        self._keep_dir = keep_dir
        # listen/trust: more addresses to listen on and client networks let in without a
        # password, e.g. a network namespace's root-side address and its subnet (netns.py).
        self._listen = listen
        self._trust = trust
        self.user = "fleet"
        self.database = "fleet"
        self._settings = {
            "shared_buffers": "256MB",
            "max_connections": "100",
            "fsync": "on",
            "synchronous_commit": "on",
            "timezone": "UTC",
            "log_min_messages": "warning",
            "max_wal_size": "2GB",
        } | (settings or {})
        self._tmp: str | None = None
        self.data_dir = Path()
        self._run_as: str | None = None

    @property
    def url(self) -> str:
        """libpq URL of the `fleet` database (trust auth on loopback, no password)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _cmd(self, *args: str) -> list[str]:
        if self._run_as:
            return ["runuser", "-u", self._run_as, "--", *args]
        return list(args)

    def _run(self, *args: str) -> None:
        result = subprocess.run(self._cmd(*args), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stderr.strip()[-2000:]}")

    def start(self) -> PostgresServer:
        """initdb a new cluster, start it and create the `fleet` role and database."""
        if self._keep_dir is not None:
            self._keep_dir.mkdir(parents=True, exist_ok=True)
            self._tmp = str(self._keep_dir.resolve())
        else:
            self._tmp = tempfile.mkdtemp(prefix="fleet-pg-")
        self.data_dir = Path(self._tmp) / "data"
        sock_dir = Path(self._tmp) / "sock"
        sock_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            self._run_as = "postgres"
            pw = pwd.getpwnam("postgres")
            for path in (self._tmp, sock_dir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        if self._primary is not None:
            self._start_standby(self._primary, sock_dir)
            return self
        if (self.data_dir / "PG_VERSION").exists():
            self._refuse_if_running()
            conf_path = self.data_dir / "postgresql.conf"
            # The port line this harness wrote last time is replaced, not added to.
            kept = [ln for ln in conf_path.read_text().splitlines() if not _PORT_LINE.match(ln)]
            conf_path.write_text("\n".join([*kept, f"port = {self.port}", ""]))
            self.start_server()
            return self
        self._run(
            find_pg_bin("initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        conf = "\n".join(f"{k} = '{v}'" for k, v in self._settings.items())
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write(f"\nlisten_addresses = '{','.join(self._listen)}'\nport = {self.port}\n")
            fh.write(f"unix_socket_directories = '{sock_dir}'\n{conf}\n")
        with (self.data_dir / "pg_hba.conf").open("a") as fh:
            fh.writelines(f"host all all {network} trust\n" for network in self._trust)
        self.start_server()
        self._run(
            find_pg_bin("createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            self.database,
        )
        return self

    def _start_standby(self, primary: PostgresServer, sock_dir: Path) -> None:
        # pg_basebackup -R writes standby.signal and primary_conninfo: the copy starts as a hot
        # standby streaming from the primary (whose initdb allows replication on loopback).
        self._run(
            find_pg_bin("pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            self.user,
            "-D",
            str(self.data_dir),
            "-R",
            "-X",
            "stream",
            "--no-sync",
            "--checkpoint=fast",
        )
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write(f"\nport = {self.port}\nunix_socket_directories = '{sock_dir}'\n")
            fh.write("hot_standby = on\n")
        self.start_server()

    async def wait_for_replay(self, primary: PostgresServer, timeout_s: float = 30) -> None:
        """Return once this standby has replayed everything the primary had written when called."""
        src = await asyncpg.connect(primary.url)
        dst = await asyncpg.connect(self.url)
        try:
            target = await src.fetchval("SELECT pg_current_wal_lsn()")
            deadline = time.monotonic() + timeout_s
            while True:
                if await dst.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"standby on {self.port} did not replay {target}")
                await asyncio.sleep(0.05)
        finally:
            await src.close()
            await dst.close()

    def _refuse_if_running(self) -> None:
        # pg_ctl's own complaint ("another server might be running") does not say which
        # process holds the cluster or how to let it go.
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except PermissionError:
            pass  # alive, and another user's
        except (OSError, ValueError):
            return  # no pid file, or a stale one from a crash: PostgreSQL cleans that up
        stop = f"{' '.join(self._cmd(find_pg_bin('pg_ctl')))} -D {self.data_dir} stop -m fast"
        raise RuntimeError(
            f"the kept cluster in {self.data_dir} is already running (PID {pid});"
            f" stop it first: {stop}"
        )

    def start_server(self) -> None:
        """(Re)start the server process on the same data directory and port."""
        self._run(
            find_pg_bin("pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def promote(self) -> None:
        """Promote this standby to a primary (what Patroni or an operator does in a failover)."""
        self._run(find_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-w", "promote")

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server process but keep its data (to simulate an outage)."""
        self._run(find_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        if self._tmp is None:
            return
        mode = "immediate" if self._keep_dir is None else "fast"
        subprocess.run(
            self._cmd(find_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"),
            capture_output=True,
            check=False,
        )
        if self._keep_dir is None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp = None
