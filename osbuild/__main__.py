"""`python -m osbuild` runs the command line."""

from osbuild.cli import main

raise SystemExit(main())
