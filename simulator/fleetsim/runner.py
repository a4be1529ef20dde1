"""Running a simulated fleet over MQTT: the Python API behind `fleet-sim run`, `make demo`, the
benchmark and the tests (`run_sim(SimOptions)`). The command line is fleetsim.cli."""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from fleetsim.direct import write_assignments_url
from fleetsim.errors import check_mqtt_url
from fleetsim.faults import FaultConfig, FaultInjector, Outgoing
from fleetsim.gateways import Gateways
from fleetsim.model import Fleet, FleetConfig, floor_time, rfc3339_s
from fleetsim.publisher import MqttPublisher
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
    `gateways` N > 0 publishes through N gateways (fleetsim.gateways) instead of each device's
    own topic.
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
    wrong_assignments: int = 0
    sleep_vehicles: int = 0
    sleep_hours: float = 8.0
    replay_lag_s: int = 0
    gateways: int = 0

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
            wrong_assignments=self.wrong_assignments,
            sleep_vehicles=self.sleep_vehicles,
            sleep_hours=self.sleep_hours,
            replay_lag_s=self.replay_lag_s,
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
        if self.gateways < 0:
            raise ValueError("--gateways must be >= 0")
        if self.gateways and self.invalid_rate:
            # A broken element would break its whole array (bad JSON) or be a valid reading of
            # another device (a wrong id has no topic to mismatch): the truth would be wrong.
            raise ValueError("--gateways cannot be combined with --invalid-rate")
        if not self.realtime and self.sim_hours is None and self.duration_s is None:
            raise ValueError("an unpaced run needs --sim-hours")
        check_mqtt_url(self.mqtt_url)
        if self.truth_path is not None and not Path(self.truth_path).parent.is_dir():
            # Found now, not after the whole run when the file is written.
            raise ValueError(f"--truth {self.truth_path}: no such directory")


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
    regroup = Gateways(fleet, options.gateways).group if options.gateways else _as_is
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
    began = time.perf_counter()
    interval = options.interval_s
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
    pacer: _Pacer = _Paced(pub, stop, options, start) if options.realtime else _AsFast(pub)
    failed = True
    try:
        k = 0
        while (ticks is None or k < ticks) and not stop.is_set():
            ts = start + timedelta(seconds=k * interval)
            current = ts
            await pacer.send(k, ts, regroup(injector.apply(fleet.tick(ts))))
            k += 1
            summary.ticks = k
            summary.end = start + timedelta(seconds=k * interval)
        summary.interrupted = stop.is_set() and (ticks is None or k < ticks)
        await pub.publish(regroup(injector.flush()))
        failed = False
    finally:
        if status_task is not None:
            status_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await status_task
        # After a failure (the broker gone for good), waiting for acks would only repeat it.
        await (pub.abort() if failed else pub.close())
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


def _as_is(out: list[Outgoing]) -> list[Outgoing]:
    return out


class _Pacer(Protocol):
    async def send(self, k: int, ts: datetime, out: list[Outgoing]) -> None:
        """Publish tick `k` (stamped `ts`)."""


class _AsFast:
    """Backfill: every tick as fast as the broker takes it."""

    def __init__(self, pub: MqttPublisher) -> None:
        self._pub = pub

    async def send(self, k: int, ts: datetime, out: list[Outgoing]) -> None:
        await self._pub.publish(out)


class _Paced:
    """Real time (x speed): a tick at its wall-clock slot, never before its own timestamp (no
    reading from the future), spread over the interval in slices, or at its top with burst."""

    def __init__(
        self, pub: MqttPublisher, stop: asyncio.Event, options: SimOptions, start: datetime
    ) -> None:
        self._pub, self._stop, self._burst = pub, stop, options.burst
        self._loop = asyncio.get_running_loop()
        self._wall0 = self._loop.time()
        self._offset_s = (start - datetime.now(UTC)).total_seconds()
        self._tick_wall = options.interval_s / options.speed
        self._interval_s = options.interval_s

    async def send(self, k: int, ts: datetime, out: list[Outgoing]) -> None:
        due = self._wall0 + max(k * self._tick_wall, self._offset_s + k * self._interval_s)
        slices = 1 if self._burst else max(1, min(len(out), int(self._tick_wall / _SLICE_S)))
        size = math.ceil(len(out) / slices) if out else 0
        for s in range(slices):
            await self._sleep_until(due + s * self._tick_wall / slices)
            if self._stop.is_set():
                # The truth already counted this tick: publish the rest so both stay equal.
                await self._pub.publish(out[s * size :])
                return
            await self._pub.publish(out[s * size : (s + 1) * size])

    async def _sleep_until(self, when: float) -> None:
        delay = when - self._loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)


def format_status(rate: float, sent: int, acked: int, errors: int, sim_time: datetime) -> str:
    """One status line that fits an 80-column terminal up to 10^8 messages."""
    return f"{rate:7,.0f}/s  sent {sent:,}  acked {acked:,}  err {errors:,}  {rfc3339_s(sim_time)}"


def status_line(summary: Summary, pub: MqttPublisher, sim_time: datetime) -> None:
    """The live status line on stderr (for a TTY): rate, sent, acked, errors, simulated time,
    rewritten in place (erased to the end, so a shorter line leaves nothing behind)."""
    line = format_status(summary.msg_per_s, pub.sent, pub.acked, pub.errors, sim_time)
    sys.stderr.write(f"\r{line}\033[K")
    sys.stderr.flush()
