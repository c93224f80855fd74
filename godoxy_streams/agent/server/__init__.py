"""The agent program's side: the agent port (engine view, tunnels, datagram flows) on a Docker
host.
"""
