"""`python -m bench.scale`: the scale benchmark (see bench/scale/cli.py and bench/README.md)."""

from bench.scale.cli import main

raise SystemExit(main())
