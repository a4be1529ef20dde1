"""A/B of the fleet report against another checkout's, call for call on one database.

    python -m fleetsim.bench.report_ab --database-url URL --ref DIR \\
        --window 2026-12-02T10:42:30Z,2026-12-03T10:42:30Z [--window ...] [--rounds 4 --calls 3]

Each round runs this checkout's `fleet_report` and then the reference's (DIR/daemon first on
the import path), each in a process of its own with a pool of two connections, `--calls` timed
calls per window after one warm-up; the medians over the rounds and their ratio are printed.
The database is the caller's (a `fleet-sim backfill --direct` dataset, e.g. the bench's cache).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

# One side: times every window, prints a JSON list of medians (ms).
_SIDE = """
import asyncio, json, statistics, sys, time
from datetime import datetime
from fleetctl.analytics import fleet_report
from fleetctl.analytics.window import Window
from fleetdb.connect import create_pool

async def main(url, calls, windows):
    pool = await create_pool(url, min_size=2, max_size=2, application_name="report-ab")
    out = []
    try:
        for a, b in windows:
            w = Window(datetime.fromisoformat(a), datetime.fromisoformat(b))
            await fleet_report(pool, w)
            ts = []
            for _ in range(calls):
                t0 = time.perf_counter()
                await fleet_report(pool, w)
                ts.append((time.perf_counter() - t0) * 1000)
            out.append(statistics.median(ts))
    finally:
        await pool.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])))
"""


def _side(daemon: Path | None, url: str, calls: int, windows: list[list[str]]) -> list[float]:
    env = dict(os.environ)
    if daemon is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(daemon), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", _SIDE, url, str(calls), json.dumps(windows)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"{daemon or 'this checkout'} failed:\n{done.stderr[-2000:]}")
    result: list[float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    """Entry point (see the module's docstring)."""
    parser = argparse.ArgumentParser(prog="python -m fleetsim.bench.report_ab")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--ref", required=True, help="a checkout of the reference version")
    parser.add_argument("--window", action="append", required=True, help="START,END (RFC 3339)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args(argv)
    windows = [[t.replace("Z", "+00:00") for t in w.split(",")] for w in args.window]
    this: list[list[float]] = []
    ref: list[list[float]] = []
    for _ in range(args.rounds):
        this.append(_side(None, args.database_url, args.calls, windows))
        ref.append(_side(Path(args.ref) / "daemon", args.database_url, args.calls, windows))
    print(f"{'window':<48}{'this':>10}{'ref':>10}{'ratio':>8}")
    for i, w in enumerate(args.window):
        a = statistics.median(r[i] for r in this)
        b = statistics.median(r[i] for r in ref)
        print(f"{w:<48}{a:>8.0f} ms{b:>7.0f} ms{a / b:>8.2f}")


if __name__ == "__main__":
    main()
