"""``python -m godoxy_streams``: the command line."""

from godoxy_streams.app.cli import main

raise SystemExit(main())
