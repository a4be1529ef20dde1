"""The topic filters fleetd subscribes to: each device kind's topic (fleetdb.kinds) and the
gateways' topic; light enough for `fleetd check-config` to print them."""

from __future__ import annotations

from fleetdb.kinds import REGISTRY, DeviceKind

# A gateway's topic carries readings of several devices (docs/ingest.md).
GATEWAY_FILTER = "gateways/+/telemetry"


def device_filters(kinds: tuple[DeviceKind, ...] = REGISTRY) -> tuple[str, ...]:
    """Each kind's device topic filter."""
    return tuple(f"{k.topic}/+/telemetry" for k in kinds)


def topic_filters(kinds: tuple[DeviceKind, ...] = REGISTRY) -> tuple[str, ...]:
    """What fleetd subscribes to for `kinds`: each kind's device topic, and the gateways'."""
    return (*device_filters(kinds), GATEWAY_FILTER)


DEVICE_FILTERS = device_filters()
TOPIC_FILTERS = topic_filters()


def subscription_filters(
    devices: tuple[str, ...] = DEVICE_FILTERS,
    *,
    share_group: str | None = None,
    gateways: bool = True,
) -> tuple[tuple[str, ...], str | None]:
    """(the device filters, the gateway filter or None when gateways are off) as subscribed,
    each behind `$share/<group>/` when a share group is set."""
    prefix = f"$share/{share_group}/" if share_group else ""
    return tuple(prefix + f for f in devices), (prefix + GATEWAY_FILTER if gateways else None)
