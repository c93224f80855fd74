"""The daemon's side of the agent tunnel: dial a destination on the agent's host through one
mutually authenticated TLS connection (ALPN ``godoxy-streams-stream/1``) that opens with the
stream header; and the probe that asks the agent to check a destination, for health checks.

``Tunnel.open_flow`` opens a UDP flow through the agent's datagram channel (``flows``).

``Tunnel.dial`` has the signature of ``loop.create_connection`` minus the options, so the
data plane uses it as its ``dialer``: the header is written before the relay's protocol
sees the transport, so it precedes every client byte (and a PROXY header, when one is sent).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable

from godoxy_streams.agent.client.datagrams import DatagramTunnel
from godoxy_streams.agent.wire.header import PROBE_OK, StreamHeader
from godoxy_streams.streams.probes import ProbeFailed


class _Opening(asyncio.Protocol):
    """Holds the transport until the agent's answer (``PROBE_OK``) has arrived: the hand-over
    to the relay happens in the same loop turn, so no later byte can reach this protocol."""

    def __init__(self) -> None:
        self.answer = asyncio.get_running_loop().create_future()
        self.data = b""

    def data_received(self, data: bytes) -> None:
        self.data += data
        if len(self.data) >= len(PROBE_OK) and not self.answer.done():
            self.answer.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(
                ConnectionRefusedError("the agent refused the destination or could not reach it")
            )


class Tunnel:
    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext,
        server_hostname: str | None = None,
        datagrams: DatagramTunnel | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.context = context
        self.server_hostname = server_hostname or host
        self.datagrams = datagrams

    def channel_view(self) -> dict[str, object] | None:
        """The datagram channel's state (None without one)."""
        return self.datagrams.view() if self.datagrams is not None else None

    async def close(self) -> None:
        """End the datagram channel (TCP tunnels are per connection and end with them)."""
        if self.datagrams is not None:
            await self.datagrams.close()

    async def open_flow(
        self, host: str, port: int, on_lost: Callable[[socket.socket], None]
    ) -> socket.socket:
        """A UDP flow to (host, port) on the agent's host, as a connected datagram socket."""
        if self.datagrams is None:
            raise ConnectionRefusedError("this agent tunnel carries no UDP")
        return await self.datagrams.open(host, port, on_lost)

    async def _open(self, header: StreamHeader) -> tuple[asyncio.Transport, _Opening]:
        """Connect, send ``header``, wait for the agent's ``PROBE_OK``; a refusal or a failed
        dial on the agent's side raises ``ConnectionRefusedError`` (so the relay fails over)."""
        raw = header.encode()  # a host that cannot be encoded fails before connecting
        loop = asyncio.get_running_loop()
        transport, opening = await loop.create_connection(
            _Opening, self.host, self.port, ssl=self.context, server_hostname=self.server_hostname
        )
        try:
            transport.write(raw)
            await opening.answer
            if opening.data[: len(PROBE_OK)] != PROBE_OK:
                raise ConnectionRefusedError(f"unexpected answer from the agent {opening.data!r}")
        except BaseException:
            transport.abort()
            raise
        return transport, opening

    async def dial(
        self, factory: Callable[[], asyncio.Protocol], host: str, port: int
    ) -> tuple[asyncio.Transport, asyncio.Protocol]:
        transport, opening = await self._open(StreamHeader(host, port))
        protocol = factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        early = opening.data[len(PROBE_OK) :]
        if early:  # the destination spoke first, in the same read as the answer
            protocol.data_received(early)
        return transport, protocol

    async def probe(self, host: str, port: int, timeout: float) -> None:
        """Raise ``ProbeFailed`` unless the agent confirms it can reach (host, port)."""
        try:
            transport, _ = await asyncio.wait_for(
                self._open(StreamHeader(host, port, True)), timeout
            )
        except (OSError, TimeoutError, ssl.SSLError, ValueError) as exc:
            raise ProbeFailed(f"agent probe of {host}:{port}: {exc or 'timed out'}") from exc
        transport.close()
