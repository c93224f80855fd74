"""What the runtime needs of a way into a remote engine's containers (an agent): dial a TCP
destination, open a UDP flow, probe a destination, report its datagram channel, close.

The daemon builds the tunnels (``agent.client``) and hands them to the manager by engine
name; the runtime names only this Protocol, so it never imports the agent's client."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Protocol


class EngineTunnel(Protocol):
    """The tunnel to one engine's containers: routes of that engine dial through it."""

    async def dial(
        self, factory: Callable[[], asyncio.Protocol], host: str, port: int
    ) -> tuple[asyncio.Transport, asyncio.Protocol]: ...

    async def open_flow(
        self, host: str, port: int, on_lost: Callable[[socket.socket], None]
    ) -> socket.socket: ...

    async def probe(self, host: str, port: int, timeout: float) -> None: ...

    def channel_view(self) -> dict[str, object] | None:
        """The datagram channel's state for ``/healthz`` (None: this tunnel has none)."""
        ...

    async def close(self) -> None: ...
