"""Deterministic device model: smart meters feeding EV chargers, and the vehicles they charge.

Every device owns a `random.Random` seeded from (seed, kind, index), so device i produces the same
stream for a seed whatever the fleet size or the order devices are stepped in. State lives in
flat lists (one per attribute) and payloads are built with f-strings: ~20,000 devices per tick
cost a few tens of milliseconds in pure Python, far below the broker's budget.

Energy is carried as integer micro-kWh (1e-6 kWh) from the moment it is rounded: the payload's
decimal string is formatted from that integer, so the truth sums (integers) equal what
PostgreSQL's numeric(12,6) sums to the last digit.

Physics, simplified on purpose:
* a vehicle alternates between idle spells (parked or driving; no DC energy, SoC falls while
  driving and never rises) and charging sessions (SoC rises towards a target 80-100 % at the
  charger's power, tapering above 80 %, CC-CV style);
* DC per interval is the energy into the battery; the meter's AC per interval is the DC of its
  vehicles divided by the charger efficiency eta, plus a small standby draw (so AC > 0 when idle);
* battery temperature relaxes towards ambient plus a term growing with charging power.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from fleetsim.overlap import asleep_at, sleep_windows
from fleetsim.wrong_assignments import registered_meters

# Charger efficiency bands (AC -> DC). Fleet operators look for the degraded and critical ones.
BANDS: dict[str, tuple[float, float]] = {
    "normal": (0.86, 0.94),
    "degraded": (0.76, 0.84),
    "critical": (0.60, 0.74),
}

METER, VEHICLE = 0, 1
MICRO = 1_000_000

Message = tuple[int, int, str, bytes, int, str]
"""(kind METER|VEHICLE, device index, topic, payload, kWh in micro-kWh, UTC hour key)."""


def device_id(prefix: str, index: int, total: int) -> str:
    """`METER-00001` for index 0: 5 digits, zero padded, more when the fleet needs them."""
    width = max(5, len(str(total)))
    return f"{prefix}-{index + 1:0{width}d}"


def device_rng(seed: int, kind: str, index: int) -> random.Random:
    """The private random stream of one device (string seeds hash with SHA-512: stable)."""
    return random.Random(f"fleetsim:{seed}:{kind}:{index}")


def kwh_text(micro: int) -> str:
    """Exact decimal text of an energy in micro-kWh: 1234567 -> '1.234567'."""
    return f"{micro // MICRO}.{micro % MICRO:06d}"


def rfc3339_s(ts: datetime) -> str:
    """UTC RFC 3339 with whole seconds and a Z suffix (the simulator never uses fractions)."""
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def hour_key(ts: datetime) -> str:
    """The UTC hour a timestamp belongs to, as the truth file keys it."""
    return ts.strftime("%Y-%m-%dT%H:00:00Z")


@dataclass(frozen=True)
class FleetConfig:
    """The fleet's shape. Defaults are the nominal load: 10,000 meters + 10,000 vehicles."""

    meters: int = 10_000
    vehicles: int = 10_000
    vehicles_per_meter: int = 1
    seed: int = 1
    interval_s: int = 60
    degraded_fraction: float = 0.05
    critical_fraction: float = 0.01
    charging_at_start: float = 0.6
    clock_skew_s: int = 0
    wrong_assignments: int = 0  # vehicles registered to a meter they do not charge at
    sleep_vehicles: int = 0  # vehicles whose telematics sleep every night (fleetsim.overlap)
    sleep_hours: float = 8.0
    replay_lag_s: int = 0  # > 0: the same fleet started this much later, published beside

    def check(self) -> None:
        """Raise ValueError naming the first bad field."""
        if self.meters < 0 or self.vehicles < 0:
            raise ValueError("--meters and --vehicles must be >= 0")
        if self.vehicles and not self.meters:
            raise ValueError("--vehicles needs at least one meter to charge from")
        if self.vehicles_per_meter < 1:
            raise ValueError("--vehicles-per-meter must be >= 1")
        if not 1 <= self.interval_s <= 86_400:
            raise ValueError("--interval must be between 1 and 86400 seconds")
        for name, value in (
            ("--degraded-fraction", self.degraded_fraction),
            ("--critical-fraction", self.critical_fraction),
        ):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.degraded_fraction + self.critical_fraction > 1:
            raise ValueError("--degraded-fraction + --critical-fraction must be <= 1")
        if self.clock_skew_s < 0:
            raise ValueError("--clock-skew-s must be >= 0")
        if not 0 <= self.wrong_assignments <= self.vehicles or (
            self.wrong_assignments and self.meters < 2
        ):
            raise ValueError("--wrong-assignments must be between 0 and --vehicles (2+ meters)")
        if not 0 <= self.sleep_vehicles <= self.vehicles or not 0 < self.sleep_hours < 24:
            raise ValueError("--sleep-vehicles must be 0..--vehicles, --sleep-hours in (0, 24)")
        if self.replay_lag_s < 0 or (
            self.replay_lag_s and self.replay_lag_s % self.interval_s == 0
        ):
            raise ValueError("--replay-lag-s must be >= 0 and not a multiple of --interval")


def assign_bands(meters: int, seed: int, degraded: float, critical: float) -> list[str]:
    """Which meters' chargers are degraded or critical: exactly round(fraction * N) of each.

    Each meter draws a fixed rank key from its own stream, so a meter keeps its band when the
    fleet grows as long as the counts allow it.
    """
    keys = [device_rng(seed, "band", i).random() for i in range(meters)]
    order = sorted(range(meters), key=keys.__getitem__)
    n_crit = round(meters * critical)
    n_deg = round(meters * degraded)
    bands = ["normal"] * meters
    for i in order[:n_crit]:
        bands[i] = "critical"
    for i in order[n_crit : n_crit + n_deg]:
        bands[i] = "degraded"
    return bands


def skew_offsets(seed: int, kind: str, count: int, max_skew_s: int) -> list[int]:
    """A fixed clock offset per device in [-max, +max] seconds (its own stream: the device's
    physics are identical with and without skew)."""
    if max_skew_s <= 0:
        return [0] * count
    return [
        device_rng(seed, f"skew-{kind}", i).randint(-max_skew_s, max_skew_s) for i in range(count)
    ]


class Fleet:
    """All devices' state; `advance()` simulates one interval, `tick(ts)` also formats it."""

    def __init__(self, config: FleetConfig) -> None:
        config.check()
        self.config = config
        c = config
        self.interval = timedelta(seconds=c.interval_s)
        self.meter_ids = [device_id("METER", i, c.meters) for i in range(c.meters)]
        self.vehicle_ids = [device_id("VEHICLE", i, c.vehicles) for i in range(c.vehicles)]
        self.meter_topics = [f"meters/{m}/telemetry" for m in self.meter_ids]
        self.vehicle_topics = [f"vehicles/{v}/telemetry" for v in self.vehicle_ids]
        # Vehicle i charges at meter i // K; wrap around when there are more vehicles than
        # K * meters so every vehicle has a meter.
        self.vehicle_meter = [
            (i // c.vehicles_per_meter) % max(c.meters, 1) for i in range(c.vehicles)
        ]
        # What the simulator writes as each vehicle's assignment (the truth file names the
        # vehicles whose registered meter is not vehicle_meter's).
        self.registered_meter = registered_meters(
            lambda purpose, j: device_rng(c.seed, purpose, j),
            self.vehicle_meter,
            c.meters,
            c.wrong_assignments,
        )
        self.sleep = sleep_windows(
            lambda purpose, j: device_rng(c.seed, purpose, j),
            c.vehicles,
            c.sleep_vehicles,
            c.sleep_hours,
        )
        # The replayed run: this fleet again, started replay_lag_s after the first tick.
        self.replay = Fleet(replace(c, replay_lag_s=0)) if c.replay_lag_s else None
        self.first_ts: datetime | None = None
        self.replay_from: datetime | None = None
        self.meter_band = assign_bands(c.meters, c.seed, c.degraded_fraction, c.critical_fraction)
        self.meter_skew = skew_offsets(c.seed, "meter", c.meters, c.clock_skew_s)
        self.vehicle_skew = skew_offsets(c.seed, "vehicle", c.vehicles, c.clock_skew_s)

        scale = c.interval_s / 60.0
        self._m_rng = [device_rng(c.seed, "meter", i) for i in range(c.meters)]
        self.meter_eff: list[float] = []
        self._m_standby: list[float] = []  # kWh per interval
        self._m_vbase: list[float] = []
        for i, r in enumerate(self._m_rng):
            lo, hi = BANDS[self.meter_band[i]]
            # Rounded to 4 digits so the truth file states the exact eta the stream used.
            self.meter_eff.append(round(r.uniform(lo, hi), 4))
            # 30-90 W: a charger's electronics, display and contactor coil.
            self._m_standby.append(r.uniform(0.0005, 0.0015) * scale)
            self._m_vbase.append(230.0 if r.random() < 0.7 else 240.0)

        self._dt_h = c.interval_s / 3600.0
        # Temperature relaxes with a 20-minute time constant whatever the interval.
        self._alpha = 1.0 - math.exp(-c.interval_s / 1200.0)
        self._idle_lo = max(1, round(10 * 60 / c.interval_s))
        self._idle_hi = max(self._idle_lo, round(120 * 60 / c.interval_s))

        self._v_rng = [device_rng(c.seed, "vehicle", i) for i in range(c.vehicles)]
        self.soc: list[float] = []
        self._cap: list[float] = []
        self._power: list[float] = []
        self._target: list[float] = []
        self.charging: list[bool] = []
        self._idle_left: list[int] = []
        self._drive_rate: list[float] = []  # SoC % per interval while driving, 0 when parked
        self._ambient: list[float] = []
        self.temp: list[float] = []
        for r in self._v_rng:
            cap = r.uniform(40.0, 100.0)
            self._cap.append(cap)
            self._power.append(r.uniform(7.0, 150.0))
            ambient = r.uniform(10.0, 30.0)
            self._ambient.append(ambient)
            self.temp.append(ambient)
            if r.random() < c.charging_at_start:
                self.soc.append(r.uniform(15.0, 50.0))
                self._target.append(r.uniform(80.0, 100.0))
                self.charging.append(True)
                self._idle_left.append(0)
                self._drive_rate.append(0.0)
            else:
                self.soc.append(r.uniform(20.0, 90.0))
                self._target.append(0.0)
                self.charging.append(False)
                # Part-way through an idle spell, so sessions start all through the first hour.
                self._idle_left.append(r.randint(1, self._idle_hi))
                self._drive_rate.append(self._new_drive_rate(r, cap))

        # Outputs of the last advance(), read by the formatters and the direct backfill.
        self.meter_ac = [0] * c.meters  # micro-kWh
        self.voltage = [0.0] * c.meters
        self.vehicle_dc = [0] * c.vehicles  # micro-kWh

    def _new_drive_rate(self, r: random.Random, cap: float) -> float:
        # Half the idle spells are spent driving at 0.1-0.3 kWh per minute, half parked.
        if r.random() < 0.5:
            return 0.0
        return r.uniform(0.1, 0.3) * (self.config.interval_s / 60.0) / cap * 100.0

    def advance(self) -> None:
        """Simulate one interval: update every device's state and the per-interval outputs."""
        dt_h, alpha = self._dt_h, self._alpha
        soc, cap, power, target = self.soc, self._cap, self._power, self._target
        charging, idle_left, drive = self.charging, self._idle_left, self._drive_rate
        ambient, temp, dc_out = self._ambient, self.temp, self.vehicle_dc
        rngs = self._v_rng
        meter_dc = [0] * len(self.meter_ac)
        meter_kw = [0.0] * len(self.meter_ac)
        vm = self.vehicle_meter
        for j in range(len(soc)):
            r = rngs[j]
            s = soc[j]
            if charging[j]:
                p = power[j]
                if s > 80.0:
                    # Constant-voltage phase: power falls linearly to 10 % at full.
                    p *= max(0.1, (100.0 - s) / 20.0)
                energy = p * dt_h
                room = (target[j] - s) * cap[j] / 100.0
                done = energy >= room
                if done:
                    energy = max(room, 0.0)
                micro = round(energy * MICRO)
                s += micro / (10_000.0 * cap[j])  # micro-kWh -> % of capacity
                s = min(s, 100.0)
                soc[j] = s
                dc_out[j] = micro
                m = vm[j]
                meter_dc[m] += micro
                meter_kw[m] += p
                heat = ambient[j] + 0.12 * p
                if done:
                    charging[j] = False
                    idle_left[j] = r.randint(self._idle_lo, self._idle_hi)
                    drive[j] = self._new_drive_rate(r, cap[j])
            else:
                dc_out[j] = 0
                d = drive[j]
                if d:
                    s -= d
                    s = max(s, 0.0)
                    soc[j] = s
                    heat = ambient[j] + 3.0
                else:
                    heat = ambient[j]
                left = idle_left[j] - 1
                idle_left[j] = left
                if left <= 0:
                    goal = r.uniform(80.0, 100.0)
                    if s < goal - 2.0:
                        target[j] = goal
                        charging[j] = True
                    else:
                        # Still nearly full: stay idle a while longer.
                        idle_left[j] = r.randint(self._idle_lo, self._idle_hi)
                        drive[j] = self._new_drive_rate(r, cap[j])
            t = temp[j]
            temp[j] = t + (heat - t) * alpha + (r.random() - 0.5) * 0.1

        ac, volt, eff, standby, vbase = (
            self.meter_ac,
            self.voltage,
            self.meter_eff,
            self._m_standby,
            self._m_vbase,
        )
        mrngs = self._m_rng
        for i in range(len(ac)):
            r = mrngs[i]
            ac[i] = round(
                (meter_dc[i] / MICRO / eff[i] + standby[i] * (0.9 + 0.2 * r.random())) * MICRO
            )
            # Voltage sags a little under load; +/- 2 V of noise.
            volt[i] = vbase[i] - 0.02 * meter_kw[i] + (r.random() - 0.5) * 4.0

    def _stamps(self, ts: datetime, skews: list[int]) -> tuple[list[str], list[str]] | None:
        """Per-device (timestamp, hour key) when clocks are skewed, else None."""
        if not self.config.clock_skew_s:
            return None
        cache: dict[int, tuple[str, str]] = {}
        stamps: list[str] = []
        hours: list[str] = []
        for off in skews:
            hit = cache.get(off)
            if hit is None:
                t = ts + timedelta(seconds=off)
                hit = cache[off] = (rfc3339_s(t), hour_key(t))
            stamps.append(hit[0])
            hours.append(hit[1])
        return stamps, hours

    def tick(self, ts: datetime) -> list[Message]:
        """Advance one interval and return every device's message stamped `ts` (plus its skew).

        Meters come first, then vehicles. The reading stamped ts carries the energy of the
        interval ending at ts.
        """
        self.advance()
        if self.first_ts is None:
            self.first_ts = ts
        out: list[Message] = []
        stamp, hour = rfc3339_s(ts), hour_key(ts)
        skewed = self._stamps(ts, self.meter_skew)
        for i, mid in enumerate(self.meter_ids):
            micro = self.meter_ac[i]
            if skewed is not None:
                stamp, hour = skewed[0][i], skewed[1][i]
            payload = (
                f'{{"meterId":"{mid}","kwhConsumedAc":{micro // MICRO}.{micro % MICRO:06d},'
                f'"voltage":{self.voltage[i]:.1f},"timestamp":"{stamp}"}}'
            )
            out.append((METER, i, self.meter_topics[i], payload.encode(), micro, hour))
        if skewed is not None:
            stamp, hour = rfc3339_s(ts), hour_key(ts)
        skewed = self._stamps(ts, self.vehicle_skew)
        soc, temp = self.soc, self.temp
        asleep = asleep_at(self.sleep, ts)
        for j, vid in enumerate(self.vehicle_ids):
            if asleep and j in asleep:
                continue
            micro = self.vehicle_dc[j]
            if skewed is not None:
                stamp, hour = skewed[0][j], skewed[1][j]
            payload = (
                f'{{"vehicleId":"{vid}","soc":{soc[j]:.2f},'
                f'"kwhDeliveredDc":{micro // MICRO}.{micro % MICRO:06d},'
                f'"batteryTemp":{temp[j]:.1f},"timestamp":"{stamp}"}}'
            )
            out.append((VEHICLE, j, self.vehicle_topics[j], payload.encode(), micro, hour))
        if self.replay is not None:
            lag = timedelta(seconds=self.config.replay_lag_s)
            if ts >= self.first_ts + lag:
                # Stamped off the interval grid by the lag's remainder: keys never clash.
                shifted = ts + timedelta(seconds=self.config.replay_lag_s % self.config.interval_s)
                if self.replay_from is None:
                    self.replay_from = shifted
                out.extend(self.replay.tick(shifted))
        return out

    def ticks(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, list[Message]]]:
        """(ts, messages) for every interval boundary ts in [start, end)."""
        ts = start
        while ts < end:
            yield ts, self.tick(ts)
            ts += self.interval


def floor_time(ts: datetime, interval_s: int) -> datetime:
    """`ts` (aware) rounded down to a multiple of the interval since the epoch, in UTC."""
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % interval_s, UTC)
