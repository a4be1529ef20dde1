"""Sending alerts: MQTT (QoS 1, `fleet/alerts/{kind}/{subject}`, retained while open, the
retained message cleared when resolved) and webhooks (POST JSON with an Idempotency-Key),
from the fleet_alert_deliveries outbox, with retries and capped backoff. The evaluator only
queues; this worker sends, so a dead webhook never holds up an evaluation."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import structlog
import yarl

from fleetctl.alerts.store import alert_json
from fleetsvc.mqtt.publisher import Publisher, PublishError

log = structlog.get_logger("fleetctl.alerts")

BACKOFF_S = 5.0
MAX_BACKOFF_S = 300.0
TIMEOUT_S = 10.0
CLIENT_ID = "fleetctl-alerts"
_DUE = """
SELECT d.id AS delivery_id, d.event, d.channel, d.idempotency_key, d.attempts, a.*
  FROM fleet_alert_deliveries d JOIN fleet_alerts a ON a.id = d.alert_id
 WHERE d.delivered_at IS NULL AND d.next_attempt_at <= $1
 ORDER BY d.id LIMIT 200
 FOR UPDATE OF d SKIP LOCKED
"""


def topic_of(kind: str, subject: str) -> str:
    """The MQTT topic of an alert (subjects are device ids: no wildcards or slashes)."""
    return f"fleet/alerts/{kind}/{subject.replace('/', '_').replace('+', '_').replace('#', '_')}"


_FAILURES = (
    OSError,
    ConnectionError,
    TimeoutError,
    ValueError,
    ssl.SSLError,
    aiohttp.ClientError,
    PublishError,
)


async def mqtt_publish(url: str | None, messages: list[tuple[str, bytes]]) -> None:
    """Publish retained QoS 1 messages (an empty payload clears a topic's retained message)
    and wait for every PUBACK. Raises on any failure (PublishError names how many messages
    were not acknowledged)."""
    if not url:
        raise ConnectionError("FLEET_ALERT_MQTT_URL is not set")
    publisher = Publisher(url, client_id=CLIENT_ID, connect_timeout_s=TIMEOUT_S)
    async with publisher:
        await publisher.publish(messages, retain=True)
        await publisher.wait_acked(TIMEOUT_S)


def webhook_session() -> aiohttp.ClientSession:
    """The HTTP client of one delivery round (its connections are reused across hooks)."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))


async def webhook_post(session: aiohttp.ClientSession, url: str, payload: bytes, key: str) -> None:
    """POST JSON; raises unless the answer is 2xx. Credentials in the URL
    (https://user:pass@host/...) go in an Authorization header, never in Host; a redirect is a
    failure (it would carry the alert, and maybe the credentials, elsewhere)."""
    target = yarl.URL(url)
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    if target.user is not None:  # yarl gives them percent-decoded
        pair = f"{target.user}:{target.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    async with session.post(
        target.with_user(None), data=payload, headers=headers, allow_redirects=False
    ) as response:
        if not 200 <= response.status < 300:
            raise ConnectionError(f"webhook answered {response.status} {response.reason}")


async def deliver_due(
    conn: asyncpg.Connection, mqtt_url: str | None, now: datetime | None = None
) -> tuple[int, int]:
    """Send what is due; returns (delivered, failed). One transaction: the rows stay locked
    (SKIP LOCKED for a second worker) while they are sent."""
    now = now or datetime.now(UTC)
    delivered = failed = 0
    async with conn.transaction():
        rows = await conn.fetch(_DUE, now)
        # A resolve supersedes its alert's unsent open on MQTT: the retained message must end
        # cleared, whatever order retries come in.
        resolving = {r["id"] for r in rows if r["event"] == "resolve" and r["channel"] == "mqtt"}
        mqtt_rows, hooks = [], []
        for r in rows:
            if r["channel"] == "mqtt" and r["event"] == "open" and r["id"] in resolving:
                await _done(conn, r, now, "superseded by resolve")
            elif r["channel"] == "mqtt":
                mqtt_rows.append(r)
            else:
                hooks.append(r)
        if mqtt_rows:
            messages = [
                (
                    topic_of(r["kind"], r["subject"]),
                    json.dumps(_message(r)).encode() if r["event"] == "open" else b"",
                )
                for r in mqtt_rows
            ]
            try:
                await mqtt_publish(mqtt_url, messages)
            except _FAILURES as exc:
                for r in mqtt_rows:
                    await _retry(conn, r, now, exc)
                failed += len(mqtt_rows)
            else:
                for r in mqtt_rows:
                    await _done(conn, r, now, None)
                delivered += len(mqtt_rows)
        if hooks:
            async with webhook_session() as session:
                for r in hooks:
                    payload = json.dumps(_message(r)).encode()
                    try:
                        await webhook_post(session, r["channel"], payload, r["idempotency_key"])
                    except _FAILURES as exc:
                        await _retry(conn, r, now, exc)
                        failed += 1
                    else:
                        await _done(conn, r, now, None)
                        delivered += 1
    return delivered, failed


def _message(r: Any) -> dict[str, Any]:
    return {"event": r["event"], "alert": alert_json(r)}


async def _done(conn: asyncpg.Connection, r: Any, now: datetime, note: str | None) -> None:
    await conn.execute(
        "UPDATE fleet_alert_deliveries SET delivered_at = $2, attempts = attempts + 1,"
        " last_error = $3 WHERE id = $1",
        r["delivery_id"],
        now,
        note,
    )


async def _retry(conn: asyncpg.Connection, r: Any, now: datetime, exc: BaseException) -> None:
    delay = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** r["attempts"])
    await conn.execute(
        "UPDATE fleet_alert_deliveries SET attempts = attempts + 1, next_attempt_at = $2,"
        " last_error = $3 WHERE id = $1",
        r["delivery_id"],
        now + timedelta(seconds=delay),
        f"{exc.__class__.__name__}: {exc}"[:500],
    )
    log.warning(
        "alert_delivery_failed",
        channel="mqtt" if r["channel"] == "mqtt" else "webhook",
        attempt=r["attempts"] + 1,
        retry_in_s=delay,
        error=str(exc)[:200],
    )


async def deliver_forever(
    conn: asyncpg.Connection, mqtt_url: str | None, every_s: float = 5.0
) -> None:
    """deliver_due() every `every_s` until cancelled."""
    while True:
        try:
            await deliver_due(conn, mqtt_url)
        except asyncpg.PostgresError as exc:
            log.warning("alert_delivery_failed", error=str(exc))
        await asyncio.sleep(every_s)
