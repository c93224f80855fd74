"""The QUIC transport both ends of the datagram channel share: configuration, link, sockets."""
