"""The one MQTT codec of fleet-telemetry (3.1.1 and 5): packet encoders (`packets`), the
checked incremental reader (`reader`) and broker addresses (`address`). fleetd's subscriber,
fleetctl's alert delivery and the simulator build on it; it imports none of them."""
