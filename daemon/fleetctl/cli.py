"""fleetctl: not yet."""

import sys


def main() -> int:
    """Placeholder until the analytics land."""
    print("fleetctl: not yet implemented", file=sys.stderr)
    return 1
