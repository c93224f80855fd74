"""The agent protocol's wire formats, pure: the stream header and the datagram channel's
messages."""
