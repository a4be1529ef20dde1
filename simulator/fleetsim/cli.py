"""fleet-sim: not yet."""

import sys


def main() -> int:
    """Placeholder until the simulator lands."""
    print("fleet-sim: not yet implemented", file=sys.stderr)
    return 1
