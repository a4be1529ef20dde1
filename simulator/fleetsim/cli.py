"""fleet-sim: publish a deterministic fleet of meters and vehicles over MQTT, or backfill history.

    fleet-sim run       live (real time by default, --speed X compresses time)
    fleet-sim backfill  D days as fast as possible, through MQTT or --direct into PostgreSQL

The Python API used by `make demo`, the benchmark and the tests is fleetsim.runner
(`run_sim(SimOptions)`) and `fleetsim.direct.backfill_direct(...)`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import NoReturn

import asyncpg
import structlog

from fleetsim.direct import DirectSummary, backfill_direct
from fleetsim.errors import SimError, database_error
from fleetsim.model import floor_time, rfc3339_s
from fleetsim.publisher import PublisherError
from fleetsim.runner import DEFAULT_MQTT_URL, SimOptions, Summary, run_sim, status_line
from fleetsvc.settings_fields import environment_warnings

# ----------------------------------------------------------------------------- command line

DEBUG_HELP = "on an error, the traceback instead of one line"


class _Parser(argparse.ArgumentParser):
    """argparse that fails with one line (and exit code 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"fleet-sim: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _rfc3339(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 timestamp: {text!r}") from None
    if ts.tzinfo is None:
        raise argparse.ArgumentTypeError(f"timestamp needs a UTC offset (e.g. Z): {text!r}")
    return ts.astimezone(UTC)


def _fleet_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fleet")
    g.add_argument("--meters", type=int, default=10_000, help="smart meters (default 10000)")
    g.add_argument("--vehicles", type=int, default=10_000, help="vehicles (default 10000)")
    g.add_argument(
        "--vehicles-per-meter", type=int, default=1, help="vehicle i charges at meter i // K"
    )
    g.add_argument("--seed", type=int, default=1, help="same seed, same stream (default 1)")
    g.add_argument("--interval", type=int, default=60, help="seconds between readings (60)")
    g.add_argument("--degraded-fraction", type=float, default=0.05, help="eta 0.76-0.84")
    g.add_argument("--critical-fraction", type=float, default=0.01, help="eta 0.60-0.74")
    g.add_argument(
        "--wrong-assignments",
        type=int,
        default=0,
        metavar="N",
        help="N vehicles registered to a meter they do not charge at (named in the truth)",
    )
    g.add_argument(
        "--sleep-vehicles",
        type=int,
        default=0,
        metavar="N",
        help="N vehicles whose telematics sleep every night (MQTT only; named in the truth)",
    )
    g.add_argument("--sleep-hours", type=float, default=8.0, help="length of that sleep (8)")
    g.add_argument(
        "--replay-lag-s",
        type=int,
        default=0,
        metavar="S",
        help="also publish this fleet started S s later: overlapping runs (MQTT only)",
    )


def _mqtt_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MQTT")
    g.add_argument(
        "--mqtt-url",
        default=os.environ.get("FLEET_MQTT_URL", DEFAULT_MQTT_URL),
        help="mqtt[s]://[user:pass@]host:port (env FLEET_MQTT_URL)",
    )
    g.add_argument("--qos", type=int, choices=(0, 1), default=1)
    g.add_argument("--connections", type=int, default=2, help="parallel connections (2)")
    g.add_argument("--window", type=int, default=5000, help="unacked messages per connection")
    g.add_argument("--truth", metavar="PATH", help="write the exact per-hour truth as JSON")
    g.add_argument("--invalid-rate", type=float, default=0.0, help="replace by invalid msgs")
    g.add_argument("--duplicate-rate", type=float, default=0.0, help="publish again later")
    g.add_argument("--out-of-order-rate", type=float, default=0.0, help="delay a few positions")
    g.add_argument("--clock-skew-s", type=int, default=0, help="per-device offset up to ±S s")
    g.add_argument(
        "--gateways",
        type=int,
        default=0,
        metavar="N",
        help="publish through N gateways (gateways/GATEWAY-xxxxx/telemetry, the devices' "
        "readings of a tick as arrays) instead of each device's topic",
    )


def build_parser() -> argparse.ArgumentParser:
    """The `fleet-sim` argument parser."""
    parser = _Parser(prog="fleet-sim", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('fleet-sim')}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    # --debug after the command too; SUPPRESS so the command's default does not undo it.
    debug = _Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="publish live telemetry", parents=[debug])
    _fleet_args(run)
    _mqtt_args(run)
    t = run.add_argument_group("time")
    t.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    t.add_argument("--burst", action="store_true", help="all devices at the top of the interval")
    t.add_argument("--duration-s", type=float, help="stop after T wall seconds")
    t.add_argument("--sim-hours", type=float, help="stop after H simulated hours")
    t.add_argument("--start", type=_rfc3339, help="first timestamp (RFC 3339)")
    run.add_argument(
        "--database-url",
        default=os.environ.get("FLEET_DATABASE_URL"),
        help="write vehicle->meter assignments here (env FLEET_DATABASE_URL)",
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON")

    back = sub.add_parser(
        "backfill",
        help="D days of history as fast as possible (--direct: COPY into PostgreSQL, "
        "BYPASSING fleetd)",
        parents=[debug],
    )
    _fleet_args(back)
    _mqtt_args(back)
    back.add_argument("--days", type=float, required=True, help="days of history")
    back.add_argument("--end", type=_rfc3339, help="end of the range (default: now)")
    back.add_argument(
        "--direct",
        action="store_true",
        help="write straight into PostgreSQL with COPY, bypassing MQTT and fleetd",
    )
    back.add_argument(
        "--database-url",
        default=os.environ.get("FLEET_DATABASE_URL"),
        help="PostgreSQL URL (env FLEET_DATABASE_URL)",
    )
    back.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def options_from_args(args: argparse.Namespace) -> SimOptions:
    """SimOptions from parsed `run` or `backfill` arguments."""
    opts = SimOptions(
        meters=args.meters,
        vehicles=args.vehicles,
        vehicles_per_meter=args.vehicles_per_meter,
        seed=args.seed,
        interval_s=args.interval,
        qos=args.qos,
        mqtt_url=args.mqtt_url,
        database_url=args.database_url,
        truth_path=args.truth,
        connections=args.connections,
        window=args.window,
        degraded_fraction=args.degraded_fraction,
        critical_fraction=args.critical_fraction,
        invalid_rate=args.invalid_rate,
        duplicate_rate=args.duplicate_rate,
        out_of_order_rate=args.out_of_order_rate,
        clock_skew_s=args.clock_skew_s,
        wrong_assignments=args.wrong_assignments,
        sleep_vehicles=args.sleep_vehicles,
        sleep_hours=args.sleep_hours,
        replay_lag_s=args.replay_lag_s,
        gateways=args.gateways,
    )
    if args.command == "run":
        opts.speed = args.speed
        opts.burst = args.burst
        opts.duration_s = args.duration_s
        opts.sim_hours = args.sim_hours
        opts.start = args.start
    else:
        if not args.days > 0:
            raise ValueError("--days must be > 0")
        end = floor_time(args.end or datetime.now(UTC), opts.interval_s)
        opts.realtime = False
        opts.sim_hours = args.days * 24
        opts.start = end - timedelta(days=args.days)
    return opts


def _print_summary(s: Summary) -> None:
    print(
        f"fleet-sim: {s.meters:,} meter + {s.vehicles:,} vehicle readings, "
        f"{s.invalid:,} invalid, {s.duplicates:,} duplicates; {s.sent:,} messages sent, "
        f"{s.acked:,} acked (QoS {s.qos}), {s.errors} connection errors; "
        f"{s.elapsed_s:.1f} s, {s.msg_per_s:,.0f} msg/s; simulated "
        f"{rfc3339_s(s.start) if s.start else '-'} .. {rfc3339_s(s.end) if s.end else '-'}"
        + (" (interrupted)" if s.interrupted else ""),
        file=sys.stderr,
    )


def _print_direct(s: DirectSummary) -> None:
    print(
        f"fleet-sim backfill --direct (BYPASSED fleetd and MQTT): {s.meter_rows:,} meter + "
        f"{s.vehicle_rows:,} vehicle rows over {s.days} day(s) in {s.copy_s:.1f} s "
        f"({s.rows_per_s:,.0f} rows/s), rollups {s.rollup_s:.1f} s, "
        f"{s.assignments:,} new assignments, total {s.elapsed_s:.1f} s",
        file=sys.stderr,
    )


async def _main_async(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main_task = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main_task is not None:
            main_task.cancel()  # second signal: give up at once
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)

    if args.command == "backfill" and args.direct:
        if not args.database_url:
            raise ValueError("--direct needs --database-url or FLEET_DATABASE_URL")
        if args.sleep_vehicles or args.replay_lag_s or args.gateways:
            # COPY writes the model's state tick by tick, not the messages a run publishes.
            raise ValueError(
                "--sleep-vehicles, --replay-lag-s and --gateways need MQTT (not --direct)"
            )
        opts = options_from_args(args)  # checks --days, places the range ending at --end
        assert opts.start is not None
        print(
            "fleet-sim: backfill --direct writes into PostgreSQL with COPY, BYPASSING fleetd",
            file=sys.stderr,
        )
        direct = await backfill_direct(
            args.database_url,
            opts.fleet_config(),
            opts.start,
            opts.start + timedelta(days=args.days),
        )
        if args.json:
            print(json.dumps(direct.as_dict()))
        _print_direct(direct)
        return 0

    opts = options_from_args(args)
    status = status_line if sys.stderr.isatty() else None
    summary = await run_sim(opts, stop=stop, on_status=status)
    if status is not None:
        sys.stderr.write("\n")
    if args.json:
        print(json.dumps(summary.as_dict()))
    _print_summary(summary)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fleet-sim` console script. Exit codes: 0 done (or stopped by a
    signal), 1 a server away or refusing, 2 a bad option, 130 interrupted twice."""
    args = build_parser().parse_args(argv)
    # As fleetd and fleetctl do: a typo'd FLEET_MQTT_URL would leave the run on the default
    # broker without a word.
    for line in environment_warnings():
        print(f"fleet-sim: warning: {line}", file=sys.stderr)
    _log_to_stderr()
    try:
        return asyncio.run(_main_async(args))
    except Exception as exc:
        if args.debug:
            raise
        code, line = _one_line(exc, args)
        print(f"fleet-sim: {line}", file=sys.stderr)
        return code
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("fleet-sim: interrupted", file=sys.stderr)
        return 130


def _log_to_stderr() -> None:
    """The publisher's events (a lost connection, a reconnect) as lines on stderr: stdout
    carries --json. The stream is looked up per line (a test may swap it)."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
    )


def _one_line(exc: Exception, args: argparse.Namespace) -> tuple[int, str]:
    """(exit code, message) for an error: what the operator can act on, on one line."""
    if isinstance(exc, ValueError):
        return 2, f"error: {exc}"
    if isinstance(exc, SimError | PublisherError):
        return 1, str(exc)
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError) and args.database_url:
        return 1, str(database_error(args.database_url, exc))
    if isinstance(exc, OSError | TimeoutError):
        return 1, f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
    return 1, f"unexpected {exc.__class__.__name__}: {exc} (--debug shows the traceback)"


if __name__ == "__main__":
    sys.exit(main())
