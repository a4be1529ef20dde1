"""What every fleet-telemetry service process shares: the HTTP server (web), the MQTT codec
(mqtt), logging set-up, secret masking and the settings both programs read. fleetd and fleetctl
both import it, and so does the simulator; it imports none of them."""
