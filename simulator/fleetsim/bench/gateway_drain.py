"""fleetd's backlog drain of the same N readings queued as one message per device and as
gateways' arrays (fleet-sim --gateways' grouping: 100 gateways, up to 400 readings a message),
interleaved in one run, each into a fresh database on the same server: readings/s, fleetd's and
PostgreSQL's CPU per stored reading, medians over the rounds; the ratio is gateways' readings/s
over devices'.

On its own: python -m fleetsim.bench.gateway_drain [--n N] [--rounds R] [--gateways G]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

from fleet_harness import MosquittoServer, PostgresServer
from fleetsim.bench.databases import PG_SETTINGS
from fleetsim.bench.fleetd_runs import drain_stage
from fleetsim.bench.printing import say
from fleetsim.bench.readings import fleet_messages
from fleetsim.gateways import Gateways
from fleetsim.model import Fleet, FleetConfig

FIGURES = ("perS", "cpuUsPerReading", "pgCpuUsPerReading")


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    devices = fleet_messages(args.n, start)
    # fleet_messages' fleet: the default 10,000 + 10,000 devices.
    gateways = Gateways(Fleet(FleetConfig()), args.gateways).group(devices)
    runs: dict[str, list[dict[str, float]]] = {"devices": [], "gateways": []}
    with PostgresServer(settings=PG_SETTINGS) as pg, MosquittoServer() as broker:
        for r in range(args.rounds):
            order = [("devices", devices), ("gateways", gateways)]
            if r % 2:  # interleaved: neither always runs first
                order.reverse()
            for name, messages in order:
                out = await drain_stage(
                    pg.url,
                    broker.url(),
                    messages,
                    start,
                    f"gw_{name}_{r}",
                    pg_dir=pg.data_dir,
                    readings=args.n,
                )
                say(f"  {name}: {out['perS']:,.0f} readings/s ({len(messages):,} messages)")
                runs[name].append(out)
    medians = {
        name: {f: statistics.median(o[f] for o in outs) for f in FIGURES}
        for name, outs in runs.items()
    }
    ratio = medians["gateways"]["perS"] / medians["devices"]["perS"]
    return {"n": args.n, "rounds": args.rounds, "medians": medians, "ratio": ratio}


def main(argv: list[str] | None = None) -> int:
    """Entry point: this comparison on its own servers."""
    parser = argparse.ArgumentParser(prog="fleetsim.bench.gateway_drain", description=__doc__)
    parser.add_argument("--n", type=int, default=40_000, help="readings queued per drain")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--gateways", type=int, default=100)
    args = parser.parse_args(argv)
    result = asyncio.run(_run(args))
    for name, m in result["medians"].items():
        print(
            f"{name:9} {m['perS']:8,.0f} readings/s  fleetd {m['cpuUsPerReading']:5.1f} µs  "
            f"PostgreSQL {m['pgCpuUsPerReading']:5.1f} µs CPU per reading"
        )
    print(f"gateways / devices: {result['ratio']:.2f}x readings/s (medians of {args.rounds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
