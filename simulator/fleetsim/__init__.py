"""fleetsim (work in progress)."""
