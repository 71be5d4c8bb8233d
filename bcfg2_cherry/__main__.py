"""``python -m bcfg2_cherry`` runs the ``bcfg2-cherry`` command line."""
from bcfg2_cherry.cli.main import main

raise SystemExit(main())
