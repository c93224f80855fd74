"""The agent: one mutually authenticated TLS port on a remote Docker host that serves, by ALPN,
a read-only view of the host's engine (``http/1.1``) and tunnelled TCP connections to the
host's labelled containers (``godoxy-streams-stream/1``). See docs/agent-protocol.md."""
