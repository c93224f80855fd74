"""Benchmark harness for godoxy-streams: `make bench` (see bench/README.md)."""
