"""The one MQTT codec of fleet-telemetry (3.1.1 and 5): packet encoders (`packets`), the
checked incremental reader (`reader`), broker addresses (`address`) and a small asyncio QoS 1
publisher (`publisher`). fleetd's subscriber, fleetctl's alert delivery and the simulator's
fast publisher build on it; it imports none of them."""
