"""What a UDP session knows of the stream that opened it: ``SessionOwner``, the small
interface ``stream.UDPStream`` offers its sessions. Sessions name this Protocol, not the stream
class, so ``session`` imports nothing above it (no import cycle)."""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol

from godoxy_streams.streams.context import ConnContext, Hook
from godoxy_streams.streams.stats import StreamStats


class SessionOwner(Protocol):
    """The stream side of every UDP session: its socket, loop, counters and read hook."""

    name: str
    loop: asyncio.AbstractEventLoop
    sock: socket.socket
    stats: StreamStats
    on_read: Hook | None

    def call_hook(self, ctx: ConnContext) -> None: ...
