"""What every fleet-telemetry service process shares: the tiny HTTP server, logging set-up and
secret masking. fleetd and fleetctl both import it; it imports neither."""
