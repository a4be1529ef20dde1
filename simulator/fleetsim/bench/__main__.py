"""python -m fleetsim.bench."""

import sys

from fleetsim.bench.run import main

sys.exit(main())
