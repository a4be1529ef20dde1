"""MQTT side of fleetd: a paho-mqtt client driven by the asyncio loop, acked after commit."""
