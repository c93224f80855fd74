"""The daemon's side of the agent: TCP tunnels and the datagram channel to an agent."""
