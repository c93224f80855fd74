"""The TCP engine: a listener per route and the connection classes that relay its connections."""
