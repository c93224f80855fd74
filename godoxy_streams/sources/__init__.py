"""The inputs: Docker engines (client, watcher, Swarm), compose files, the static routes file, the
socket filter.
"""
