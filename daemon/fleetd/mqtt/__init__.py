"""MQTT side of fleetd: a lean asyncio subscriber of our own, acked after commit."""
