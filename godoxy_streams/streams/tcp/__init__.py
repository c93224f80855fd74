"""The TCP data plane: a listener per route and the connection classes that relay its
connections."""
