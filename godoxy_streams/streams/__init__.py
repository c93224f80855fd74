"""The stream engine: TCP and UDP listeners that relay to a swappable upstream target."""

from godoxy_streams.streams.context import ConnContext, ConnRecord, Hook, OnClose, Outcome
from godoxy_streams.streams.options import StreamOptions
from godoxy_streams.streams.stats import StreamStats
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
