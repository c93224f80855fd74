"""The stream engine: TCP and UDP listeners that relay to a swappable upstream target."""

from godoxy_streams.streams.common import (
    ConnContext,
    ConnRecord,
    Hook,
    OnClose,
    Outcome,
    StreamOptions,
    StreamStats,
)
from godoxy_streams.streams.tcp.stream import TCPStream
from godoxy_streams.streams.udp.stream import UDPStream

__all__ = [
    "ConnContext",
    "ConnRecord",
    "Hook",
    "OnClose",
    "Outcome",
    "StreamOptions",
    "StreamStats",
    "TCPStream",
    "UDPStream",
]
