"""TLS on a shared listen socket: reading the ClientHello, matching server names, choosing a
route by name (SNI passthrough) and terminating TLS for routes that ask for it."""
