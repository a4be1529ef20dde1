"""MQTT side of fleetd: a lean asyncio subscriber of our own, acked after commit (its codec is
the shared fleetsvc.mqtt)."""
