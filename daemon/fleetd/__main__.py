from fleetd.cli import main

raise SystemExit(main())
