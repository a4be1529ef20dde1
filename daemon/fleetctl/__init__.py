"""fleetctl (work in progress)."""
