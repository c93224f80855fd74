"""The UDP engine: a listen socket per route and its sessions, one connected upstream each."""
