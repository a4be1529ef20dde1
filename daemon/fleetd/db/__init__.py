"""PostgreSQL side of fleetd: migrations, partitions and the batch writer."""
