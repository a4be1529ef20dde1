"""Pure parts of the writer connections: the hosts of a multi-host URL, and when a server's
settings mean a commit waits for a synchronous standby."""

from __future__ import annotations

import pytest

from fleetdb.connect import url_hosts
from fleetdb.replication import Replication


@pytest.mark.parametrize(
    ("url", "hosts"),
    [
        ("postgresql://u@h1:5432/fleet", []),  # one host: asyncpg reads the URL whole
        ("postgresql:///fleet?host=/run/postgresql", []),
        (
            "postgresql://u:p@h1:5432,h2:5433/fleet?target_session_attrs=read-write",
            [("h1", 5432), ("h2", 5433)],
        ),
        ("postgresql://h1,h2/fleet", [("h1", None), ("h2", None)]),
        ("postgresql://u@[::1]:5432,[fd00::2]/fleet", [("::1", 5432), ("fd00::2", None)]),
    ],
)
def test_url_hosts_lists_each_host_of_a_multi_host_url(
    url: str, hosts: list[tuple[str, int | None]]
) -> None:
    assert url_hosts(url) == hosts


@pytest.mark.parametrize(
    ("names", "commit", "synchronous"),
    [
        ("*", "on", True),
        ("FIRST 1 (pg2, pg3)", "remote_apply", True),
        ("ANY 1 (pg2)", "remote_write", True),
        ("", "on", False),  # asynchronous replication, or none
        ("  ", "on", False),
        ("*", "local", False),  # the session does not wait for the standby
        ("*", "off", False),
    ],
)
def test_synchronous_needs_standby_names_and_a_commit_level_that_waits(
    names: str, commit: str, synchronous: bool
) -> None:
    state = Replication(
        server="h:5432", standby_names=names, synchronous_commit=commit, sync_connected=None
    )
    assert state.synchronous is synchronous
