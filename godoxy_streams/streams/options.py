"""How a stream is tuned: its options (timeouts, admission, PROXY protocol, dialers), with
defaults that match ``model.RouteSpec``; and the types of the dialers it can be given."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from godoxy_streams.streams.acl import Acl
from godoxy_streams.streams.budget import DescriptorBudget
from godoxy_streams.streams.limits import ConcurrencyCounter

Dialer = Callable[
    [Callable[[], asyncio.Protocol], str, int],
    Coroutine[Any, Any, tuple[asyncio.BaseTransport, asyncio.Protocol]],
]
# Opens a UDP session's upstream: a datagram socket connected to (host, port), e.g. an agent's
# flow; the callback is called with that socket if the far end ends it first.
DatagramDialer = Callable[
    [str, int, Callable[[socket.socket], None]], Coroutine[Any, Any, socket.socket]
]


@dataclass(frozen=True)
class StreamOptions:
    """Per-stream tuning; defaults match ``model.RouteSpec``."""

    dial_timeout: float = 5.0
    idle_timeout: float | None = None  # TCP: close a connection idle this long (both ways)
    on_stop: Literal["drain", "kill"] = "drain"
    drain_timeout: float = 5.0
    udp_timeout: float = 60.0  # UDP: a session idle this long (either way) expires
    max_sessions: int = 10_000  # UDP: new sessions are refused beyond this
    # Admission (see ``admission``); all off by default, and free when off.
    acl: Acl | None = None  # judges the effective client (after a PROXY header)
    peer_acl: Acl | None = None  # judges the socket peer when a PROXY header named another
    max_connections: int | None = None  # TCP: open connections of this stream
    per_source_max: int | None = None  # open connections / UDP sessions per source
    per_source_rate: float | None = None  # new connections / UDP sessions per second per source
    per_source_burst: int = 20
    global_limit: ConcurrencyCounter | None = None  # shared by every stream of the daemon
    budget: DescriptorBudget | None = None  # descriptors, split among streams (``budget``)
    # PROXY protocol (TCP only; see ``guard``).
    proxy_protocol: Literal["v1", "v2"] | None = None  # send a header to the upstream
    proxy_protocol_trusted: Acl | None = None  # peers that must send a header (others: must not)
    proxy_header_timeout: float = 3.0
    # How upstream connections are made: ``loop.create_connection`` unless a dialer is given
    # (e.g. an agent tunnel); called as ``dialer(protocol_factory, host, port)``.
    dialer: Dialer | None = None
    # How UDP sessions' upstream sockets are made: a connected socket unless given.
    datagram_dialer: DatagramDialer | None = None

    @property
    def guarded(self) -> bool:
        """Whether any admission or PROXY protocol option is set."""
        return (
            self.acl is not None
            or self.peer_acl is not None
            or self.max_connections is not None
            or self.per_source_max is not None
            or self.per_source_rate is not None
            or self.global_limit is not None
            or self.budget is not None
            or self.proxy_protocol is not None
            or self.proxy_protocol_trusted is not None
        )


DEFAULT_OPTIONS = StreamOptions()
