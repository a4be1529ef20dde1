"""fleetd behind strict broker windows: RabbitMQ with mqtt.prefetch as the window."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fleet_harness.rabbitmq import INSTALL_HINT as RABBIT_HINT
from fleet_harness.rabbitmq import RabbitMqServer, RabbitMqStartError, find_rabbitmq
from fleet_harness.rows import wait_for_rows
from fleetsim.bench.databases import drain_rate, ensure_days, new_database
from fleetsim.bench.mqtt_sessions import create_session, drop_session
from fleetsim.bench.printing import say
from fleetsim.bench.processes import fleetd
from fleetsim.bench.readings import fleet_messages, publish


async def window_stage(
    admin_url: str, windows: tuple[int, ...], start: datetime, *, quick: bool
) -> dict[str, Any] | None:
    """Backlog drain behind a RabbitMQ whose mqtt.prefetch is each window, with the idle flush
    and (window 10 only, a few windows' worth) without it, as before FLEET_FLUSH_IDLE_MS."""
    if find_rabbitmq() is None:
        say(f"    skipped: rabbitmq-server is not installed ({RABBIT_HINT})")
        return None
    out: dict[str, Any] = {}
    try:
        for window in windows:
            await _one_window(admin_url, window, start, quick=quick, out=out)
    except RabbitMqStartError as exc:  # say so and keep the other stages' figures
        say(f"    skipped: {str(exc)[:300]}")
        return None
    return out


async def _one_window(
    admin_url: str, window: int, start: datetime, *, quick: bool, out: dict[str, Any]
) -> None:
    """Backlog drains behind one RabbitMQ whose mqtt.prefetch is `window`, into `out`."""
    n = (200 if quick else 1_000) * max(1, min(window, 10))
    messages = fleet_messages(n, start)
    cases: list[tuple[str, int, dict[str, str]]] = [("idle", n, {})]
    if window == 10:
        cases.append(("noIdle", 5 * window, {"FLEET_FLUSH_IDLE_MS": "0"}))
    with RabbitMqServer(prefetch=window) as rabbit:
        mqtt = rabbit.url()
        for case, count, env in cases:
            name = f"win{window}-{case}".lower()
            url = await new_database(admin_url, f"bench_{name.replace('-', '_')}")
            await ensure_days(url, start, start + timedelta(days=1))
            create_session(mqtt, name, v5=False)
            await publish(mqtt, messages[:count])
            with fleetd(mqtt, url, name, **env) as proc:
                got = await wait_for_rows(url, count, timeout_s=300, proc=proc)
            drop_session(mqtt, name)
            _, rate = await drain_rate(url)
            out.setdefault(str(window), {})[case] = {"rows": got, "perS": rate}
            say(f"    window {window}, {case}: {got:,} rows at {rate:,.0f}/s")
