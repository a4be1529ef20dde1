"""`python -m fleetsim.demo` (what `make demo` runs)."""

from fleetsim.demo.main import main

raise SystemExit(main())
