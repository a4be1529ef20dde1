"""fleet-sim: publish a deterministic fleet of meters and vehicles over MQTT, or backfill history.

    fleet-sim run       live (real time by default, --speed X compresses time)
    fleet-sim backfill  D days as fast as possible, through MQTT or --direct into PostgreSQL

The Python API used by `make demo`, the benchmark and the tests is `run_sim(SimOptions)` and
`fleetsim.direct.backfill_direct(...)`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import asyncpg

from fleetsim.direct import DirectSummary, backfill_direct, write_assignments_url
from fleetsim.faults import FaultConfig, FaultInjector
from fleetsim.model import Fleet, FleetConfig, floor_time, rfc3339_s
from fleetsim.publisher import MqttPublisher, PublisherError
from fleetsim.truth import Truth

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
# Spread mode publishes a slice of the tick at most every 20 ms of wall time.
_SLICE_S = 0.02


@dataclass
class SimOptions:
    """Everything `fleet-sim run` / `backfill` (through MQTT) accepts.

    Time: `start` defaults to now rounded down to the interval; with `speed` > 1 (or
    `realtime=False`) the simulated span ends at now, so no timestamp is in the future.
    `sim_hours` or `duration_s` (wall seconds) bound the run; neither = until stopped.
    `realtime=False` publishes as fast as the broker takes it (backfill).
    """

    meters: int = 10_000
    vehicles: int = 10_000
    vehicles_per_meter: int = 1
    seed: int = 1
    interval_s: int = 60
    speed: float = 1.0
    burst: bool = False
    duration_s: float | None = None
    sim_hours: float | None = None
    start: datetime | None = None
    realtime: bool = True
    qos: int = 1
    mqtt_url: str = DEFAULT_MQTT_URL
    database_url: str | None = None
    truth_path: str | None = None
    connections: int = 2
    window: int = 5000
    client_id_prefix: str = "fleet-sim"
    degraded_fraction: float = 0.05
    critical_fraction: float = 0.01
    invalid_rate: float = 0.0
    duplicate_rate: float = 0.0
    out_of_order_rate: float = 0.0
    clock_skew_s: int = 0

    def fleet_config(self) -> FleetConfig:
        """The model's part of the options."""
        return FleetConfig(
            meters=self.meters,
            vehicles=self.vehicles,
            vehicles_per_meter=self.vehicles_per_meter,
            seed=self.seed,
            interval_s=self.interval_s,
            degraded_fraction=self.degraded_fraction,
            critical_fraction=self.critical_fraction,
            clock_skew_s=self.clock_skew_s,
        )

    def fault_config(self) -> FaultConfig:
        """The fault injector's part of the options."""
        return FaultConfig(
            invalid_rate=self.invalid_rate,
            duplicate_rate=self.duplicate_rate,
            out_of_order_rate=self.out_of_order_rate,
        )

    def check(self) -> None:
        """Raise ValueError (one line, naming the option) for inconsistent options."""
        self.fleet_config().check()
        self.fault_config().check()
        if not self.speed > 0 or math.isinf(self.speed):
            raise ValueError("--speed must be a positive number")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("--duration-s must be > 0")
        if self.sim_hours is not None and self.sim_hours <= 0:
            raise ValueError("--sim-hours must be > 0")
        if self.duration_s is not None and self.sim_hours is not None:
            raise ValueError("give --duration-s or --sim-hours, not both")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("--start needs a UTC offset, e.g. 2026-11-23T10:00:00Z")
        if self.qos not in (0, 1):
            raise ValueError("--qos must be 0 or 1")
        if self.connections < 1:
            raise ValueError("--connections must be >= 1")
        if not self.realtime and self.sim_hours is None and self.duration_s is None:
            raise ValueError("an unpaced run needs --sim-hours")


@dataclass
class Summary:
    """What a run published. meters/vehicles are unique valid readings (the truth's counts)."""

    meters: int = 0
    vehicles: int = 0
    invalid: int = 0
    duplicates: int = 0
    sent: int = 0  # every message written, faults included
    acked: int = 0
    errors: int = 0
    ticks: int = 0
    elapsed_s: float = 0.0
    start: datetime | None = None
    end: datetime | None = None  # exclusive: the first tick not published
    qos: int = 1
    interrupted: bool = False
    truth: Truth | None = field(default=None, repr=False)

    @property
    def msg_per_s(self) -> float:
        """Messages written per wall second."""
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form for `--json`."""
        return {
            "mode": "mqtt",
            "meters": self.meters,
            "vehicles": self.vehicles,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "sent": self.sent,
            "acked": self.acked,
            "errors": self.errors,
            "ticks": self.ticks,
            "qos": self.qos,
            "start": rfc3339_s(self.start) if self.start else None,
            "end": rfc3339_s(self.end) if self.end else None,
            "elapsedSeconds": round(self.elapsed_s, 3),
            "msgPerSecond": round(self.msg_per_s),
            "interrupted": self.interrupted,
        }


def plan(options: SimOptions, now: datetime | None = None) -> tuple[datetime, int | None]:
    """(first tick, number of ticks or None for unbounded) for these options at `now`."""
    now = now or datetime.now(UTC)
    interval = options.interval_s
    span: float | None = None
    if options.sim_hours is not None:
        span = options.sim_hours * 3600
    elif options.duration_s is not None:
        span = options.duration_s * options.speed
    # 1e-9: 0.05 days * 24 is 1.2000000000000002 hours, which is still 72 ticks.
    ticks = None if span is None else max(1, math.ceil(span / interval - 1e-9))
    if options.start is not None:
        return options.start.astimezone(UTC), ticks
    if options.speed == 1 and options.realtime:
        return floor_time(now, interval), ticks
    # Compressed time: the simulated span ends now, so fleetd never sees future timestamps.
    # Unbounded: start an hour back; pacing then catches up with the clock and follows it.
    back = ticks * interval if ticks is not None else 3600
    return floor_time(now - timedelta(seconds=back), interval), ticks


StatusCallback = Callable[[Summary, MqttPublisher, datetime], None]


async def run_sim(
    options: SimOptions,
    *,
    stop: asyncio.Event | None = None,
    on_status: StatusCallback | None = None,
    status_every_s: float = 0.5,
) -> Summary:
    """Simulate and publish; returns once every QoS 1 message is acknowledged by the broker.

    `stop` ends the run early (after the current slice; held-back messages are still sent).
    With `options.truth_path` the truth file is written at the end; `summary.truth` has it too.
    """
    options.check()
    stop = stop or asyncio.Event()
    fleet = Fleet(options.fleet_config())
    truth = Truth(fleet)
    devices = options.meters + options.vehicles
    injector = FaultInjector(options.fault_config(), options.seed, truth, devices)
    start, ticks = plan(options)
    summary = Summary(start=start, end=start, qos=options.qos, truth=truth)
    if options.database_url:
        await write_assignments_url(options.database_url, fleet, start)
    pub = MqttPublisher(
        options.mqtt_url,
        qos=options.qos,
        connections=options.connections,
        window=options.window,
        client_id_prefix=options.client_id_prefix,
    )
    await pub.connect()
    loop = asyncio.get_running_loop()
    wall0 = loop.time()
    began = time.perf_counter()
    now0 = datetime.now(UTC)
    interval = options.interval_s
    tick_wall = interval / options.speed
    current = start

    def refresh() -> None:
        summary.meters, summary.vehicles = truth.meters, truth.vehicles
        summary.invalid, summary.duplicates = truth.invalid, truth.duplicates
        summary.sent, summary.acked, summary.errors = pub.sent, pub.acked, pub.errors
        summary.elapsed_s = time.perf_counter() - began

    async def status_loop() -> None:
        assert on_status is not None
        while True:
            await asyncio.sleep(status_every_s)
            refresh()
            on_status(summary, pub, current)

    status_task = asyncio.create_task(status_loop()) if on_status else None
    try:
        k = 0
        while (ticks is None or k < ticks) and not stop.is_set():
            ts = start + timedelta(seconds=k * interval)
            current = ts
            out = injector.apply(fleet.tick(ts))
            if not options.realtime:
                await pub.publish(out)
            else:
                # Never before the tick's own wall-clock time (no future timestamps), and never
                # before its paced slot.
                due = max(wall0 + k * tick_wall, wall0 + (ts - now0).total_seconds())
                slices = 1 if options.burst else max(1, min(len(out), int(tick_wall / _SLICE_S)))
                size = math.ceil(len(out) / slices) if out else 0
                for s in range(slices):
                    delay = due + s * tick_wall / slices - loop.time()
                    if delay > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        # Unpublished readings of this tick leave the truth: publish them
                        # anyway (the truth already counted them) so both stay equal.
                        await pub.publish(out[s * size :])
                        break
                    await pub.publish(out[s * size : (s + 1) * size])
            k += 1
            summary.ticks = k
            summary.end = start + timedelta(seconds=k * interval)
        summary.interrupted = stop.is_set() and (ticks is None or k < ticks)
        await pub.publish(injector.flush())
    finally:
        if status_task is not None:
            status_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await status_task
        await pub.close()
        refresh()
    if options.truth_path:
        truth.write(
            options.truth_path,
            seed=options.seed,
            interval_s=interval,
            start=start,
            end=summary.end or start,
        )
    return summary


# ----------------------------------------------------------------------------- command line


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


def build_parser() -> argparse.ArgumentParser:
    """The `fleet-sim` argument parser."""
    parser = _Parser(prog="fleet-sim", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="publish live telemetry")
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


def status_line(summary: Summary, pub: MqttPublisher, sim_time: datetime) -> None:
    """The live status line on stderr (for a TTY): rate, sent, acked, errors, simulated time."""
    sys.stderr.write(
        f"\r{summary.msg_per_s:9,.0f} msg/s  sent {pub.sent:,}  acked {pub.acked:,}"
        f"  errors {pub.errors}  sim {rfc3339_s(sim_time)}   "
    )
    sys.stderr.flush()


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
    """Entry point of the `fleet-sim` console script."""
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_main_async(args))
    except ValueError as exc:
        print(f"fleet-sim: error: {exc}", file=sys.stderr)
        return 2
    except PublisherError as exc:
        print(f"fleet-sim: {exc}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        print(f"fleet-sim: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("fleet-sim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
