"""The stream engine: TCP and UDP listeners that relay to a swappable upstream target."""

from godoxy_streams.streams.common import ConnContext, Hook, StreamOptions, StreamStats
from godoxy_streams.streams.tcp import TCPStream
from godoxy_streams.streams.udp import UDPStream

__all__ = ["ConnContext", "Hook", "StreamOptions", "StreamStats", "TCPStream", "UDPStream"]
