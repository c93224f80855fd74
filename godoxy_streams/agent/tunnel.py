"""The daemon's side of the agent tunnel: dial a destination on the agent's host through one
mutually authenticated TLS connection (ALPN ``godoxy-streams-stream/1``) that opens with the
stream header; and the probe that asks the agent to check a destination, for health checks.

``Tunnel.dial`` has the signature of ``loop.create_connection`` minus the options, so the
stream engine uses it as its ``dialer``: the header is written before the relay's protocol
sees the transport, so it precedes every client byte (and a PROXY header, when one is sent).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from godoxy_streams.agent.header import PROBE_OK, StreamHeader
from godoxy_streams.health import ProbeFailed


class _Opening(asyncio.Protocol):
    """Holds the transport between the handshake and the hand-over (no loop turn passes)."""


class Tunnel:
    def __init__(
        self, host: str, port: int, context: ssl.SSLContext, server_hostname: str | None = None
    ) -> None:
        self.host, self.port = host, port
        self.context = context
        self.server_hostname = server_hostname or host

    async def _open(self, header: StreamHeader) -> asyncio.Transport:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(
            _Opening, self.host, self.port, ssl=self.context, server_hostname=self.server_hostname
        )
        transport.write(header.encode())
        return transport

    async def dial(
        self, factory: Callable[[], asyncio.Protocol], host: str, port: int
    ) -> tuple[asyncio.Transport, asyncio.Protocol]:
        transport = await self._open(StreamHeader(host, port))
        protocol = factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return transport, protocol

    async def probe(self, host: str, port: int, timeout: float) -> None:
        """Raise ``ProbeFailed`` unless the agent confirms it can reach (host, port)."""
        reader = asyncio.StreamReader()
        try:
            transport = await asyncio.wait_for(self._open(StreamHeader(host, port, True)), timeout)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise ProbeFailed(f"agent {self.host}:{self.port}: {exc or 'timed out'}") from exc
        protocol = asyncio.StreamReaderProtocol(reader)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        try:
            answer = await asyncio.wait_for(reader.read(len(PROBE_OK)), timeout)
        except (OSError, TimeoutError) as exc:
            raise ProbeFailed(f"agent probe of {host}:{port}: {exc or 'timed out'}") from exc
        finally:
            transport.close()
        if answer != PROBE_OK:
            raise ProbeFailed(f"the agent refused or cannot reach {host}:{port}")
