from cao_sidecar.cli import main

raise SystemExit(main())
