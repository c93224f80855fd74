"""The data plane: TCP and UDP listeners that relay to a swappable upstream target.

The names below are importable from here (``from godoxy_streams.streams import TCPStream``),
loaded on first use so that importing one module of the package does not load them all.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_HOMES = {
    "ConnContext": "context",
    "ConnRecord": "context",
    "Hook": "context",
    "OnClose": "context",
    "Outcome": "context",
    "StreamOptions": "options",
    "StreamStats": "stats",
    "TCPStream": "tcp.stream",
    "UDPStream": "udp.stream",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'godoxy_streams.streams' has no attribute {name!r}")
    value = getattr(import_module(f"godoxy_streams.streams.{home}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from godoxy_streams.streams.context import ConnContext, ConnRecord, Hook, OnClose, Outcome
    from godoxy_streams.streams.options import StreamOptions
    from godoxy_streams.streams.stats import StreamStats
    from godoxy_streams.streams.tcp.stream import TCPStream
    from godoxy_streams.streams.udp.stream import UDPStream
