"""The UDP data plane: a listen socket per route and its sessions, one connected upstream each."""
