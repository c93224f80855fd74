"""The scale benchmark: how the daemon's cost grows with the number of containers it follows.

``python -m bench.scale`` (``make bench-scale``) runs the real daemon against a simulated Docker
engine holding 1,000 / 5,000 / 10,000 labelled containers (``sim``) and against the local Docker
engine with 30 / 300 / 1,000 real containers (``real``); see bench/README.md, "Scale".
"""
