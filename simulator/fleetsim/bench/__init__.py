"""The benchmark behind `make bench` and `make bench-quick` (see fleetsim.bench.run)."""
