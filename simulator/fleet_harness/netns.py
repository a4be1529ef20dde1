"""Broken networks for tests: a network namespace joined to the root one by a veth pair.

The kernel here has no `sch_netem`, so a link is "cut" with iptables DROP both ways inside the
namespace: packets vanish, nobody sends a reset, and both ends learn of it only through their
own timeouts, which is what a dead switch or a pulled cable looks like. Typical use: a server of
the harness listens on `ns.host_ip` (root side) and the process under test runs inside the
namespace (`ns.popen([...])`), so its link to that server crosses the veth and can be cut.

Root only. `netns_unavailable()` gives the reason to skip when it cannot work. Every namespace
is removed (its processes killed, its veth and its iptables rules with it) by `stop()`, by the
`with` block, at interpreter exit, and — for one left by a SIGKILLed run — by the next run.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import itertools
import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fleet_harness.server import ThrowawayServer

# Names carry the owner's PID so a later run can tell a namespace left behind by a killed one.
_NAME = re.compile(r"^fleet-(\d+)-(\d+)$")
# Interface names are at most 15 bytes: "fh" + PID (<= 7 digits) + "x" + counter.
_HOST_IF = "fh{pid}x{n}"
_NS_IF = "fn{pid}x{n}"
# One /30 per namespace out of a block reserved for this harness; chosen under a lock among
# the addresses the root namespace does not use yet, so parallel runs never share one.
_POOL = ipaddress.IPv4Network("10.231.0.0/16")
_LOCK_PATH = "/run/lock/fleet-netns.lock"
_CHAIN = "FLEET_CUT"
_counter = itertools.count(1)


def netns_unavailable() -> str | None:
    """Why namespaces with cut links cannot be made here (skip reason), or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces and iptables need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (Debian: apt-get install -y iproute2 iptables)"
    return None


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_members(name: str) -> None:
    # A process left inside would keep the namespace (and its veth) alive after `ip netns del`.
    pids = _sh("ip", "netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _remove(name: str, host_if: str) -> None:
    _kill_members(name)
    _sh("ip", "netns", "del", name, check=False)
    # Deleting a namespace removes its veth end (and so the pair) asynchronously; delete the
    # root end too so the address is free at once for the next namespace.
    _sh("ip", "link", "del", host_if, check=False)


def sweep_stale() -> list[str]:
    """Remove namespaces this harness made in processes that no longer exist; return them."""
    removed = []
    for line in _sh("ip", "netns", "list", check=False).stdout.splitlines():
        match = _NAME.match(line.split(" ", 1)[0])
        if match and not _pid_alive(int(match[1])):
            pid, n = match[1], match[2]
            _remove(match[0], _HOST_IF.format(pid=pid, n=n))
            removed.append(match[0])
    return removed


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    os.makedirs(os.path.dirname(_LOCK_PATH), exist_ok=True)
    with open(_LOCK_PATH, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _free_subnet() -> ipaddress.IPv4Network:
    used: set[ipaddress.IPv4Network] = set()
    for line in _sh("ip", "-o", "-4", "addr", "show").stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            used.add(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).network)
    subnets = list(_POOL.subnets(new_prefix=30))
    start = random.randrange(len(subnets))
    for subnet in subnets[start:] + subnets[:start]:
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise RuntimeError(f"no free /30 left in {_POOL}")


class NetNamespace(ThrowawayServer):
    """A network namespace with a veth pair to the root namespace, whose link can be cut.

    `host_ip` is the root side's address, `ns_ip` the namespace side's; `subnet` holds both.
    Start processes inside with `popen()`/`run()` (or prefix a command with `wrap()`); they are
    killed when the namespace is stopped.
    """

    def __init__(self) -> None:
        self.name = ""
        self.host_if = ""
        self.ns_if = ""
        self.subnet = ipaddress.IPv4Network("0.0.0.0/32")
        self.host_ip = ""
        self.ns_ip = ""
        self._procs: list[subprocess.Popen[Any]] = []
        self._cut_ports: tuple[int, ...] | None = None

    @property
    def is_cut(self) -> bool:
        """True between cut() and restore()."""
        return self._cut_ports is not None

    def start(self) -> NetNamespace:
        """Create the namespace, the veth pair and their addresses; bring the links up."""
        reason = netns_unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        sweep_stale()
        pid, n = os.getpid(), next(_counter)
        self.name = f"fleet-{pid}-{n}"
        self.host_if = _HOST_IF.format(pid=pid, n=n)
        self.ns_if = _NS_IF.format(pid=pid, n=n)
        atexit.register(self.stop)
        try:
            with _allocation_lock():
                self.subnet = _free_subnet()
                host, inside = list(self.subnet.hosts())[:2]
                self.host_ip, self.ns_ip = str(host), str(inside)
                _sh("ip", "netns", "add", self.name)
                _sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
                _sh("ip", "link", "set", self.ns_if, "netns", self.name)
                _sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _sh("ip", "link", "set", self.host_if, "up")
            self._in_ns("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
            self._in_ns("ip", "link", "set", self.ns_if, "up")
            self._in_ns("ip", "link", "set", "lo", "up")
            self._in_ns("iptables", "-w", "-N", _CHAIN)
            self._in_ns("iptables", "-w", "-I", "INPUT", "-i", self.ns_if, "-j", _CHAIN)
            self._in_ns("iptables", "-w", "-I", "OUTPUT", "-o", self.ns_if, "-j", _CHAIN)
        except BaseException:
            self.stop()
            raise
        return self

    def _in_ns(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _sh("ip", "netns", "exec", self.name, *args)

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        """`cmd` prefixed so that it runs inside the namespace."""
        return ["ip", "netns", "exec", self.name, *cmd]

    def popen(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `cmd` inside the namespace (Popen keyword arguments pass through)."""
        proc: subprocess.Popen[Any] = subprocess.Popen(self.wrap(cmd), **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, cmd: Sequence[str], timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside the namespace to completion; its output as text."""
        return subprocess.run(
            self.wrap(cmd), capture_output=True, text=True, check=False, timeout=timeout_s
        )

    def host_url(self, url: str) -> str:
        """`url` (of a server on 127.0.0.1) with the root side's address as its host, as a
        process inside the namespace reaches it. The server must listen there too."""
        parts = urlsplit(url)
        userinfo, at, _ = parts.netloc.rpartition("@")
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{self.host_ip}{port}"))

    def cut(self, *ports: int) -> None:
        """Silently drop packets both ways on the veth: all of them, or only TCP packets from
        or to one of `ports` (e.g. the database's, leaving the rest of the link up)."""
        self.restore()
        if not ports:
            self._in_ns("iptables", "-w", "-A", _CHAIN, "-j", "DROP")
        for port in ports:
            for side in ("--sport", "--dport"):
                self._in_ns(
                    "iptables", "-w", "-A", _CHAIN, "-p", "tcp", side, str(port), "-j", "DROP"
                )
        self._cut_ports = ports

    def restore(self) -> None:
        """Let every packet through again (connections that timed out meanwhile stay dead)."""
        if self.name:
            self._in_ns("iptables", "-w", "-F", _CHAIN)
        self._cut_ports = None

    def stop(self) -> None:
        """Kill the processes started inside, delete the namespace, its veth and its rules."""
        if not self.name:
            return
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        self._procs.clear()
        _remove(self.name, self.host_if)
        atexit.unregister(self.stop)
        self.name = ""
        self._cut_ports = None


def wait_gone(name: str, timeout_s: float = 10) -> bool:
    """True once no namespace called `name` is listed (deletion completes asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = _sh("ip", "netns", "list", check=False).stdout.split()
        if name not in listed:
            return True
        time.sleep(0.05)
    return False
