"""The test harness's kept clusters (the benchmark's cached dataset)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_harness import PostgresServer


@pytest.fixture
def keep_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path, whose parents are private: when root, the cluster belongs
    # to the postgres user, and the harness hands over only the directory itself.
    path = Path(tempfile.mkdtemp(prefix="fleet-kept-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_kept_cluster_already_running_is_refused_with_the_command_that_frees_it(
    keep_dir: Path,
) -> None:
    running = r"already running \(PID \d+\).*stop -m fast"
    with PostgresServer(keep_dir=keep_dir), pytest.raises(RuntimeError, match=running):
        PostgresServer(keep_dir=keep_dir).start()
    # Reused twice more: still one port line, the one of the last start.
    for _ in range(2):
        with PostgresServer(keep_dir=keep_dir) as pg:
            conf = (pg.data_dir / "postgresql.conf").read_text().splitlines()
            assert [ln for ln in conf if ln.startswith("port = ")] == [f"port = {pg.port}"]
