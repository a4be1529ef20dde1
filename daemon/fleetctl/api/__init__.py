"""`fleetctl serve`: the /v1 JSON API (handlers), the HTTP service around it (server) and the
dashboard page with its static files."""
