"""The demo's command line and the order of things: servers, fleetd, the compressed hour and its
report, then (in a terminal) the live system until Ctrl-C. Everything is removed at the end."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fleet_harness import MosquittoServer, PostgresServer, free_port
from fleet_harness.cleanup import unwind_on_sigterm
from fleetsim.demo.live import (
    BIN,
    Dashboard,
    child,
    keep_publishing,
    print_live,
    wait_for_http,
    write_config,
)
from fleetsim.demo.report import compressed_hour
from fleetsim.runner import SimOptions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fleetsim.demo", description=__doc__)
    parser.add_argument("--meters", type=int, default=10_000, help="smart meters (10000)")
    parser.add_argument("--vehicles", type=int, default=10_000, help="vehicles (10000)")
    parser.add_argument("--speed", type=float, default=60.0, help="the hour's pace (60x)")
    parser.add_argument(
        "--live",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the system up after the report (default: when stdin is a terminal)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; in a terminal keep it up until Ctrl-C."""
    args = _parser().parse_args(argv)
    live = sys.stdin.isatty() if args.live is None else args.live
    unwind_on_sigterm()
    try:
        _demo(args, live=live)
    except KeyboardInterrupt:
        print("\ndemo: interrupted; servers stopped and removed", file=sys.stderr)
        return 130
    if live:
        print("demo: stopped; servers and temp files removed")
    return 0


def _demo(args: argparse.Namespace, *, live: bool) -> None:
    with (
        PostgresServer() as pg,
        MosquittoServer() as mq,
        tempfile.TemporaryDirectory(prefix="fleet-demo-") as tmp_dir,
    ):
        tmp = Path(tmp_dir)
        fleetd_addr = f"127.0.0.1:{free_port()}"
        env = {
            "FLEET_DATABASE_URL": pg.url,
            "FLEET_MQTT_URL": mq.url(),
            "FLEET_LOG_FORMAT": "console",
            "FLEET_LOG_LEVEL": "warning",
            "FLEET_HTTP_ADDR": fleetd_addr,
        }
        print(f"postgres  {pg.url}\nmosquitto {mq.url()}")
        subprocess.run([str(BIN / "fleetd"), "migrate"], env=os.environ | env, check=True)
        with child(["fleetd", "run"], env) as daemon:
            # Readings published before fleetd subscribes are dropped by the broker.
            wait_for_http(f"http://{fleetd_addr}/readyz", daemon)
            hour = asyncio.run(
                compressed_hour(
                    SimOptions(
                        meters=args.meters,
                        vehicles=args.vehicles,
                        speed=args.speed,
                        sim_hours=1.0,
                        mqtt_url=mq.url(),
                        database_url=pg.url,
                        truth_path=str(tmp / "truth.json"),
                        invalid_rate=0.0005,
                        duplicate_rate=0.001,
                        client_id_prefix="demo-sim",
                    ),
                    pg.url,
                    tmp / "truth.json",
                    speed=args.speed,
                )
            )
            if not live:
                print(
                    "\n  (in a terminal, `make demo` keeps all this running afterwards:"
                    "\n   the dashboard, fleetctl against it, the simulator live)"
                )
                return
            token = secrets.token_urlsafe(24)
            board = Dashboard(f"127.0.0.1:{free_port()}", token, tmp / "fleetctl.toml")
            write_config(board.config, pg.url, board.addr, token)
            with child(["fleetctl", "--config", str(board.config), "serve"], env) as serve:
                wait_for_http(f"http://{board.addr}/healthz", serve)
                print_live(board, fleetd_addr, hour.worst_vehicle, pg.url)
                # From where the hour stopped: fast until it reaches the clock (fleetd's
                # drain of the hour took minutes), then the clock's pace. Each tick at once
                # (burst): a report's window then never ends inside a tick that has its meters'
                # AC but not yet its vehicles' DC, which would show good chargers as degraded.
                live_options = SimOptions(
                    meters=args.meters,
                    vehicles=args.vehicles,
                    start=hour.end,
                    speed=args.speed,
                    burst=True,
                    mqtt_url=mq.url(),
                    invalid_rate=0.0005,
                    client_id_prefix="demo-live",
                )
                asyncio.run(keep_publishing(live_options))
                unwind_on_sigterm()  # the loop's own handler is gone with the loop
